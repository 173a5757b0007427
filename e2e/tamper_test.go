package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func chunkFiles(t testing.TB, data, incident string) []string {
	t.Helper()
	var files []string
	filepath.Walk(filepath.Join(data, "chunks", incident), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(p, ".chunk") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if len(files) < 3 {
		t.Fatalf("only %d chunk files", len(files))
	}
	return files
}

func expectVerifyFails(t *testing.T, data, incident, naming string, withIdentity bool) {
	t.Helper()
	args := []string{"verify", incident, "--data", data}
	if withIdentity {
		args = append(args, "--identity", identityPath(data))
	}
	out, errs, code := camvault(t, args...)
	if code != 1 {
		t.Fatalf("verify after tampering: exit %d, want 1\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, naming) {
		t.Fatalf("verify output does not name %s:\n%s", naming, out)
	}
}

func TestTamperIsDetected(t *testing.T) {
	c := testClip(t, 7)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatal(err)
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	mustCamvault(t, "verify", inc.ID, "--data", data, "--identity", identityPath(data))
	files := chunkFiles(t, data, inc.ID)
	rel := func(p string) string { r, _ := filepath.Rel(filepath.Join(data, "chunks"), p); return r }

	// Flip one byte in every chunk in turn (with and without the identity).
	for i, f := range files {
		orig, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(f, 0o600)
		mod := append([]byte(nil), orig...)
		mod[len(mod)/2+i] ^= 0x01
		os.WriteFile(f, mod, 0o600)
		expectVerifyFails(t, data, inc.ID, rel(f), i%2 == 0)
		os.WriteFile(f, orig, 0o400)
	}
	mustCamvault(t, "verify", inc.ID, "--data", data)

	// Delete one.
	victim := files[len(files)/2]
	saved, _ := os.ReadFile(victim)
	os.Remove(victim)
	expectVerifyFails(t, data, inc.ID, rel(victim), false)
	os.WriteFile(victim, saved, 0o400)

	// Swap two.
	a, b := files[1], files[2]
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	os.Chmod(a, 0o600)
	os.Chmod(b, 0o600)
	os.WriteFile(a, bb, 0o400)
	os.WriteFile(b, ab, 0o400)
	expectVerifyFails(t, data, inc.ID, rel(a), true)
	os.Chmod(a, 0o600)
	os.Chmod(b, 0o600)
	os.WriteFile(a, ab, 0o400)
	os.WriteFile(b, bb, 0o400)
	mustCamvault(t, "verify", inc.ID, "--data", data, "--identity", identityPath(data))

	// An export bundle: the same checks offline.
	exp := filepath.Join(t.TempDir(), "export")
	mustCamvault(t, "export", inc.ID, "--identity", identityPath(data), "--out", exp, "--data", data)
	pub := filepath.Join(data, "keys", "node.pub")
	bundleFiles := chunkFiles(t, exp, "")
	f := bundleFiles[len(bundleFiles)-1]
	orig, _ := os.ReadFile(f)
	os.Chmod(f, 0o600)
	orig[len(orig)-1] ^= 0x80
	os.WriteFile(f, orig, 0o600)
	out, _, code := camvault(t, "verify", exp, "--pubkey", pub)
	if code != 1 || !strings.Contains(out, "FAIL") {
		t.Fatalf("verify of a tampered bundle: exit %d\n%s", code, out)
	}
	// Editing the manifest itself breaks the chain or the signature.
	exp2 := filepath.Join(t.TempDir(), "export2")
	mustCamvault(t, "export", inc.ID, "--identity", identityPath(data), "--out", exp2, "--data", data)
	mf := filepath.Join(exp2, "manifest.jsonl")
	m, _ := os.ReadFile(mf)
	m = []byte(strings.Replace(string(m), `"plain_size":`, `"plain_size":1`, 1))
	os.WriteFile(mf, m, 0o600)
	if _, _, code := camvault(t, "verify", exp2, "--pubkey", pub); code != 1 {
		t.Fatalf("verify of an edited manifest: exit %d, want 1", code)
	}
	// A re-encoded MP4 in the bundle is caught when the identity is given.
	exp4 := filepath.Join(t.TempDir(), "export4")
	mustCamvault(t, "export", inc.ID, "--identity", identityPath(data), "--out", exp4, "--data", data)
	mp4 := filepath.Join(exp4, "incident.mp4")
	reenc := filepath.Join(t.TempDir(), "reenc.mp4")
	runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-i", mp4, "-c:v", "libx264", "-g", "60", "-bf", "0", "-c:a", "copy", reenc)
	reencoded, _ := os.ReadFile(reenc)
	os.WriteFile(mp4, reencoded, 0o600)
	if out, _, code := camvault(t, "verify", exp4, "--pubkey", pub, "--identity", identityPath(data)); code != 1 || !strings.Contains(out, "differs from the sealed original") {
		t.Fatalf("verify of a re-encoded export: exit %d\n%s", code, out)
	}
	// A bundle checked against another node's key fails.
	other := t.TempDir()
	mustCamvault(t, "keygen", "--data", other)
	exp3 := filepath.Join(t.TempDir(), "export3")
	mustCamvault(t, "export", inc.ID, "--identity", identityPath(data), "--out", exp3, "--data", data)
	if out, _, code := camvault(t, "verify", exp3, "--pubkey", filepath.Join(other, "keys", "node.pub")); code != 1 || !strings.Contains(out, "signature") {
		t.Fatalf("verify with a foreign node key: exit %d\n%s", code, out)
	}
}

// TestSIGTERMDrains: everything cut before the signal is committed and
// verifiable after a restart.
func TestSIGTERMDrains(t *testing.T) {
	c := testClip(t, 12)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	done := make(chan error, 1)
	go func() { done <- publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp") }()
	time.Sleep(7 * time.Second)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	if s.exitErr != nil {
		t.Fatalf("server exit: %v\n%s", s.exitErr, s.logs())
	}
	<-done
	rows := incidents(t, data)
	if len(rows) != 1 || rows[0].Status != "interrupted" {
		t.Fatalf("incidents after SIGTERM: %+v", rows)
	}
	// ~7 s streamed at 2 s segments: at least init + 3 media chunks, the
	// partial last segment included.
	if rows[0].Chunks < 4 {
		t.Fatalf("%d chunks after SIGTERM\n%s", rows[0].Chunks, s.logs())
	}
	s2 := newServer(t, data)
	_ = s2
	if o, e, code := camvault(t, "verify", rows[0].ID, "--data", data, "--identity", identityPath(data)); code != 0 {
		t.Fatalf("verify after restart: exit %d\n%s%s", code, o, e)
	}
}
