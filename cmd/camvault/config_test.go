package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "camvault.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFile: serve's flags come from --config FILE, each through the
// flag's own parser, and a flag on the command line overrides the file;
// a repeatable flag takes a list. An unknown key (a secret among them: no
// flag takes one), a bad value, an empty or nested value, a repeated key
// and the config key itself are usage errors naming the key and its line.
func TestConfigFile(t *testing.T) {
	path := writeConfig(t, `# comment
rtsp: ":1111"
grace: 5s
rtsp-max-conns: 7
no-demo: true
public-ip: 203.0.113.7
webhook:
  - https://a.example/hook
  - https://b.example/hook
`)
	fl, f := newServeFlags()
	if err := parseWithConfig(fl, []string{"--config", path, "--rtsp", ":2222", "--rtsp-max-conns=9"}); err != nil {
		t.Fatal(err)
	}
	if *f.rtspAddr != ":2222" || *f.rtspMax != 9 {
		t.Errorf("command line did not override the file: rtsp %q, rtsp-max-conns %d", *f.rtspAddr, *f.rtspMax)
	}
	if *f.grace != 5*time.Second || !*f.noDemo || *f.publicIPs != "203.0.113.7" || *f.readTimeout != 10*time.Second {
		t.Errorf("file values: grace %v, no-demo %v, public-ip %q, read-timeout %v (default)", *f.grace, *f.noDemo, *f.publicIPs, *f.readTimeout)
	}
	if got := f.bf.alerts.webhooks; len(got) != 2 || got[1] != "https://b.example/hook" {
		t.Errorf("webhook list: %q", got)
	}
	// A repeatable flag given on the command line replaces the file's list.
	fl, f = newServeFlags()
	if err := parseWithConfig(fl, []string{"--config", path, "--webhook", "https://c.example/"}); err != nil {
		t.Fatal(err)
	}
	if got := f.bf.alerts.webhooks; len(got) != 1 || got[0] != "https://c.example/" {
		t.Errorf("webhook from the command line: %q", got)
	}

	for _, c := range []struct{ text, want string }{
		{"rtsp: \":1\"\nbogus-key: 1\n", `line 2: unknown key "bogus-key"`},
		{"s3-secret-key: hunter2hunter2\n", `line 1: unknown key "s3-secret-key"`},
		{"config: other.yaml\n", `line 1: unknown key "config"`},
		{"grace: 5s\nsegment: soon\n", `line 2: key "segment": invalid value "soon"`},
		{"rtsp-max-conns: many\n", `line 1: key "rtsp-max-conns": invalid value "many"`},
		{"no-demo: maybe\n", `line 1: key "no-demo": invalid value "maybe"`},
		{"log-level: loud\n", ""}, // checked where the flag is used, not in the file
		{"grace:\n", `line 1: key "grace": want a single value`},
		{"rtsp:\n  host: x\n", `line 2: key "rtsp": want a single value`},
		{"public-ip: [a, b]\n", `line 1: key "public-ip": want a single value`},
		{"grace: 1s\ngrace: 2s\n", `line 2: key "grace" already given on line 1`},
		{"- rtsp\n", "line 1: want a mapping"},
		{"rtsp: \":1\"\n---\nrtsp: \":2\"\n", "more than one YAML document"},
		{"rtsp: [\n", "yaml:"},
	} {
		fl, _ := newServeFlags()
		err := parseWithConfig(fl, []string{"--config", writeConfig(t, c.text)})
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: %v", c.text, err)
			}
			continue
		}
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want a one-line usage error with %q", c.text, err, c.want)
		}
	}
	if err := parseWithConfig(newFlagSetOnly(), []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}); err == nil {
		t.Error("a missing config file accepted")
	}
	// An empty file sets nothing.
	fl, f = newServeFlags()
	if err := parseWithConfig(fl, []string{"--config", writeConfig(t, "# nothing yet\n")}); err != nil || *f.rtspAddr != ":8554" {
		t.Errorf("empty file: %v, rtsp %q", err, *f.rtspAddr)
	}
}

// TestDeployConfigsParse: the example files in deploy/ are valid for the
// commands they are for, so they cannot rot.
func TestDeployConfigsParse(t *testing.T) {
	node := filepath.Join("..", "..", "deploy", "node.yaml")
	fl, f := newServeFlags()
	if err := parseWithConfig(fl, []string{"--config", node}); err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	if *f.bf.identity != "-" || f.data.dir != "/var/lib/camvault" || !*f.noDemo {
		t.Errorf("%s: identity %q, data %q, no-demo %v", node, *f.bf.identity, f.data.dir, *f.noDemo)
	}
	bo := filepath.Join("..", "..", "deploy", "backoffice.yaml")
	fl, data, bf := newBackofficeFlags()
	if err := parseWithConfig(fl, []string{"--config", bo}); err != nil {
		t.Fatalf("%s: %v", bo, err)
	}
	if data.dir != "/var/lib/camvault" || *bf.identity == "" || *bf.identity == "-" || len(bf.alerts.webhooks) != 1 {
		t.Errorf("%s: data %q, identity %q, webhooks %q", bo, data.dir, *bf.identity, bf.alerts.webhooks)
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "deploy", "camvault.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=camvault", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/camvault", "PrivateTmp=yes",
		"--config /etc/camvault/node.yaml"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("camvault.service lacks %q", want)
		}
	}
}

func newFlagSetOnly() *flag.FlagSet {
	fl, _ := newServeFlags()
	return fl
}
