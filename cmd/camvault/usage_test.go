package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestUsageErrors: every command's usage errors are one line naming the
// command, what is wrong and how to put it right, then the pointer to
// its --help; exit 2, nothing on stdout, never the usage text or a list
// of flags (the flag package's own dump included).
func TestUsageErrors(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	d := func(args ...string) []string { return append(args, "--data", data) }
	badKey := writeConfig(t, "rtsp: \":8554\"\nrtsp-port: 8554\n")
	badValue := writeConfig(t, "grace: 5s\nsegment: soon\n")
	if _, errs, code := runCmd(t, d("keygen")...); code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	for _, c := range []struct {
		cmd  string // the command the message names
		args []string
		want string // in the first line
		in   string // stdin
	}{
		{"serve", d("serve", "--bogus"), "unknown flag --bogus", ""},
		{"serve", d("serve", "extra"), `unexpected argument "extra"`, ""},
		{"serve", d("serve", "--segment", "soon"), `invalid value "soon" for --segment`, ""},
		{"serve", d("serve", "--log-level", "loud", "--no-demo"), "--log-level", ""},
		{"serve", d("serve", "--config", badKey), `line 2: unknown key "rtsp-port"`, ""},
		{"serve", d("serve", "--config", badValue), `line 2: key "segment": invalid value "soon"`, ""},
		{"backoffice", d("backoffice", "--config", badKey), `line 1: unknown key "rtsp"`, ""},
		{"backoffice", d("backoffice", "extra"), `unexpected argument "extra"`, ""},
		{"backoffice", d("backoffice", "--identity", "-"), "give it one", ""},
		{"keygen", d("keygen", "extra"), `unexpected argument "extra"`, ""},
		{"keygen", d("keygen", "--bogus"), "unknown flag --bogus", ""},
		{"camera", d("camera"), "missing what to do", ""},
		{"camera", d("camera", "paint", "cam1"), `unknown subcommand "paint"`, ""},
		{"camera", d("camera", "add"), "missing the camera ID", ""},
		{"camera", d("camera", "revoke", "cam1", "cam2"), `unexpected argument "cam2"`, ""},
		{"camera", d("camera", "add", "cam1"), "missing --officer NAME", ""},
		{"camera", d("camera", "add", "Bad/Id", "--officer", "x"), `camera id "Bad/Id"`, ""},
		{"incidents", d("incidents", "--bogus"), "unknown flag --bogus", ""},
		{"incidents", d("incidents", "extra"), `unexpected argument "extra"`, ""},
		{"incidents", d("incidents", "--json=maybe"), `invalid boolean value "maybe" for --json`, ""},
		{"alerts", d("alerts", "--after", "yesterday"), `invalid value "yesterday" for --after`, ""},
		{"alerts", []string{"alerts", "--after"}, "flag -after needs a value", ""},
		{"audit", d("audit", "bogus"), `unknown subcommand "bogus"`, ""},
		{"audit", d("audit", "verify", "extra"), `unexpected argument "extra"`, ""},
		{"audit", d("audit", "--nope"), "unknown flag --nope", ""},
		{"review", d("review"), "missing the incident", ""},
		{"review", d("review", "inc", "--seq", "three"), `invalid value "three" for --seq`, ""},
		{"review", d("review", "inc", "--identity", "id", "--reason", "why"), "missing --seq N", ""},
		{"review", d("review", "inc", "--seq", "1", "--reason", "why"), "missing --identity FILE", ""},
		{"review", d("review", "inc", "--seq", "1", "--identity", "id"), "missing --reason TEXT", ""},
		{"export", d("export", "inc", "--out", "x"), "missing --identity FILE", ""},
		{"export", d("export", "inc", "--identity", "x"), "missing --out DIR", ""},
		{"export", d("export", "--identity", "x", "--out", "y"), "missing the incident", ""},
		{"export", d("export", "a", "b", "--identity", "x", "--out", "y"), `unexpected argument "b"`, ""},
		{"verify", d("verify"), "missing the export directory or incident", ""},
		{"verify", d("verify", "a", "b"), `unexpected argument "b"`, ""},
		{"verify", d("verify", "inc-nope"), "neither an export directory nor an incident", ""},
		{"hold", d("hold"), "missing what to do", ""},
		{"hold", d("hold", "grab", "inc"), `unknown subcommand "grab"`, ""},
		{"hold", d("hold", "place", "--reason", "r", "--reference", "p"), "missing the incident", ""},
		{"hold", d("hold", "place", "inc", "--reference", "p"), "missing --reason TEXT", ""},
		{"hold", d("hold", "place", "inc", "--reason", "r"), "missing --reference", ""},
		{"user", d("user"), "missing what to do", ""},
		{"user", d("user", "frob", "x"), `unknown subcommand "frob"`, ""},
		{"user", d("user", "add", "--role", "admin"), "missing the user name", ""},
		{"user", d("user", "list", "x"), `unexpected argument "x"`, ""},
		{"user", d("user", "disable", "a", "b"), `unexpected argument "b"`, ""},
		{"user", d("user", "add", "eve", "--role", "chief"), `unknown role "chief"`, "a long enough password\n"},
		{"user", d("user", "add", "bad name", "--role", "admin"), `user name "bad name"`, ""},
		{"user", d("user", "add", "eve", "--role", "admin"), "password shorter than 12 characters: give a longer one", "short\n"},
		{"user", d("user", "add", "eve", "--role", "admin", "--password-env", "CAMVAULT_TEST_UNSET"), "the variable is not set", ""},
		{"retention", d("retention"), "missing what to do", ""},
		{"retention", d("retention", "prune"), `unknown subcommand "prune"`, ""},
		{"retention", d("retention", "sweep", "x"), `unexpected argument "x"`, ""},
		{"retention", d("retention", "sweep", "--now", "someday"), `--now "someday"`, ""},
		{"retention", d("retention", "extend", "inc", "--reason", "r"), "missing --category NAME", ""},
		{"retention", d("retention", "extend", "--category", "complaint", "--reason", "r"), "missing the incident", ""},
		{"bench", []string{"bench", "extra"}, `unexpected argument "extra"`, ""},
		{"bench", []string{"bench", "--rounds", "many"}, `invalid value "many" for --rounds`, ""},
		{"simulate", d("simulate", "--cameras", "ten"), `invalid value "ten" for --cameras`, ""},
		{"simulate", d("simulate", "extra"), `unexpected argument "extra"`, ""},
	} {
		stdin = strings.NewReader(c.in)
		out, errs, code := runCmd(t, c.args...)
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		switch {
		case code != 2 || out != "":
			t.Errorf("%v: exit %d, stdout %q; want 2 and nothing\n%s", c.args, code, out, errs)
		case len(lines) != 2 || lines[1] != "see camvault "+c.cmd+" --help":
			t.Errorf("%v: want one line and the see-help line, got:\n%s", c.args, errs)
		case !strings.HasPrefix(lines[0], "camvault "+c.cmd+": ") || !strings.Contains(lines[0], c.want):
			t.Errorf("%v: first line %q, want it to name %q and say %q", c.args, lines[0], c.cmd, c.want)
		case strings.Contains(errs, "Usage of") || strings.Contains(errs, "usage:") || strings.Contains(errs, "\n  -") || strings.Contains(errs, "commands:"):
			t.Errorf("%v: a usage dump:\n%s", c.args, errs)
		}
	}
	// An unknown command has no command to name: the pointer is to the
	// list of commands.
	if _, errs, code := runCmd(t, "nosuch"); code != 2 || errs != "camvault: unknown command \"nosuch\"\nsee camvault --help\n" {
		t.Errorf("unknown command: exit %d\n%s", code, errs)
	}
}

// TestCommandHelp: --help, -h and "help CMD" print the command's usage
// lines and its flags on stdout and exit 0.
func TestCommandHelp(t *testing.T) {
	for _, args := range [][]string{{"user", "--help"}, {"user", "add", "-h"}, {"help", "user"}} {
		out, errs, code := runCmd(t, args...)
		if code != 0 || errs != "" || !strings.Contains(out, "user add NAME --role ROLE") || !strings.Contains(out, "-password-env") ||
			strings.Contains(out, "serve ") {
			t.Errorf("%v: exit %d, stderr %q, stdout:\n%s", args, code, errs, out)
		}
	}
	if out, _, code := runCmd(t, "--help"); code != 0 || !strings.Contains(out, "commands:") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}
