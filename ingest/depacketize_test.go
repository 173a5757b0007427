package ingest

import "testing"

func TestValidNALUs(t *testing.T) {
	good := [][]byte{{0x67, 1}, {0x68, 1}, {0x65, 1, 2}}
	if out, err := validNALUs(good); err != nil || len(out) != 3 {
		t.Fatalf("good units: %d, %v", len(out), err)
	}
	mixed := [][]byte{{0x65, 1}, {0x80 | 0x01}, {0x00}, {0x1c, 0x85}, {}}
	out, err := validNALUs(mixed)
	if err == nil || len(out) != 1 || out[0][0] != 0x65 {
		t.Fatalf("mixed units: %d kept, %v", len(out), err)
	}
	if out, err := validNALUs([][]byte{{0xff}}); out != nil || err == nil {
		t.Fatal("all-invalid access unit kept")
	}
}
