package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadMetricsToken: the metrics token is read from a file no other
// user can read, and must be one token long enough not to be guessed.
func TestLoadMetricsToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	if tok, err := loadMetricsToken(write("good", "  a-metrics-token-0123456789\n", 0o600)); err != nil || tok != "a-metrics-token-0123456789" {
		t.Errorf("good token file: %q, %v", tok, err)
	}
	for _, c := range []struct {
		path, want string
	}{
		{write("open", "a-metrics-token-0123456789\n", 0o644), "accessible by other users"},
		{write("short", "short\n", 0o600), "at least 16 characters"},
		{write("two", "a-metrics-token-0123456789 another-token-0123456789\n", 0o600), "no spaces"},
		{filepath.Join(dir, "missing"), "metrics token:"},
	} {
		if _, err := loadMetricsToken(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to say %q", filepath.Base(c.path), err, c.want)
		}
	}
}
