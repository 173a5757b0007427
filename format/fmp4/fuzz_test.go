package fmp4

import (
	"testing"

	"camvault/format/container"
)

// FuzzReader: the fMP4 reader that verification and export run over
// stored and exported sessions answers any init and segment bytes with
// samples or an error, never a panic, and never more tracks of samples
// than the init declares.
func FuzzReader(f *testing.F) {
	w, err := NewWriter(testTracks())
	if err != nil {
		f.Fatal(err)
	}
	init, _ := w.Init()
	seg, err := w.Marshal(1, [][]container.Sample{
		{{DTS: 0, Duration: 3000, Key: true, Data: [][]byte{{0x65, 1, 2}}}},
		{{DTS: 0, Duration: 960, Key: true, Data: [][]byte{{0xfc, 1}}}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(init, seg)
	f.Add(init, []byte{})
	f.Add([]byte{}, seg)
	f.Add(init[:len(init)/2], seg[:len(seg)/2])
	f.Fuzz(func(t *testing.T, init, segments []byte) {
		codecs, cerr := TrackCodecs(init)
		samples, err := Samples(init, segments)
		if err != nil {
			return
		}
		if cerr != nil {
			t.Fatalf("samples read with an init whose tracks cannot be named: %v", cerr)
		}
		if len(samples) > len(codecs) {
			t.Fatalf("%d tracks of samples, the init declares %d", len(samples), len(codecs))
		}
	})
}
