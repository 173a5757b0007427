package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfig: any bytes as serve's --config file are applied or refused
// with a one-line usage error, never a panic; what is applied is applied
// again identically (the flags' own parsers take every value).
func FuzzConfig(f *testing.F) {
	for _, p := range []string{"node.yaml", "backoffice.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "deploy", p)); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"rtsp: \":8554\"\n", "grace: 5s\nno-demo: true\n", "webhook:\n  - https://a/\n  - https://b/\n", "bogus: 1\n",
		"grace: soon\n", "grace:\n", "a: &x 1\nb: *x\n", "rtsp: !!binary aGk=\n", "- 1\n", "{rtsp: [1, {a: b}]}\n", "rtsp: 1\nrtsp: 2\n",
		"rtsp: \":1\"\n---\nrtsp: \":2\"\n", "\xff\xfe", "? [a]\n: b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, _ := newServeFlags()
		err := applyConfig(fl, "fuzz.yaml", data)
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("not a one-line usage error: %q", err)
			}
			return
		}
		var first, again []string
		fl.VisitAll(func(fl2 *flag.Flag) { first = append(first, fl2.Name+"="+fl2.Value.String()) })
		fl, _ = newServeFlags()
		if err := applyConfig(fl, "fuzz.yaml", data); err != nil {
			t.Fatalf("applied once, refused the second time: %v", err)
		}
		fl.VisitAll(func(fl2 *flag.Flag) { again = append(again, fl2.Name+"="+fl2.Value.String()) })
		if strings.Join(first, "\n") != strings.Join(again, "\n") {
			t.Fatalf("not deterministic:\n%v\n%v", first, again)
		}
	})
}
