// Command camvault records bodycam incidents as sealed, immutable evidence.
//
// Machine-readable output goes to stdout, explanations to stderr. Exit
// status: 0 ok (--help included), 1 a check failed (verify), 2 usage or setup
// error, 3 verify passed with a warning (an incident's last records not yet
// anchored in the chunk store).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// usageError makes main exit 2. Its message is one line that says what
// is wrong and how to put it right; main adds the command and a pointer
// to its --help, never the whole usage text, which buried the one line
// that mattered.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errCheckFailed makes main exit 1 after the command printed why.
var errCheckFailed = errors.New("check failed")

// errCheckWarned makes main exit 3 after the command printed why: the
// check passed, with something a script must not take for a plain OK.
var errCheckWarned = errors.New("check passed with a warning")

// helpRequested is --help (or -h) on a command: main prints that
// command's usage lines and flags on stdout and exits 0.
type helpRequested struct{ fs *flag.FlagSet }

func (helpRequested) Error() string { return "help requested" }

const usage = `usage: camvault COMMAND [flags] [args]

commands:
  serve                              run the ingest and backoffice listeners
  backoffice                         run the backoffice listener alone, beside "serve --identity -"
                                     (the identity then stays out of the process that parses camera input)
  keygen                             create the key files in <data>/keys
  camera add ID --officer NAME       register a camera; prints its secret once
  camera revoke ID | camera rotate ID
                                     refuse a camera / give it a new secret (printed once)
  incidents [--json]                 list incidents
  alerts [--json] [--after ID]       the alert outbox: warnings, incidents started and ended, holds, deletions
  audit                              the audit trail (JSON lines, hash-chained)
  audit anchor                       sign the trail's head and anchor it in the chunk store (serve does it every minute)
  audit verify [--pubkey FILE] [--json]
                                     check the chain, every signed head and every anchored head; exit 1 if tampered
  review INCIDENT --seq N --identity FILE --reason TEXT [--by NAME]
                                     one segment's review proxy to stdout (| ffplay -); made on demand if none was stored
  export INCIDENT --identity FILE --out DIR
                                     verify and write an export bundle for the police
  verify DIR|INCIDENT [--identity FILE] [--pubkey FILE]... [--json]
                                     verify an export bundle, a redacted bundle or a stored incident; exit 1 if it fails,
                                     3 if it passes but the incident's last records are not anchored in the store yet
  redact detect INCIDENT --identity FILE --reason TEXT
                                     the faces in an incident, as tracks with thumbnails (JSON)
  redact request INCIDENT --plan FILE --reason TEXT --reference CASE-NO
  redact approve REDACTION | list [--json]
  redact download REDACTION --identity FILE --out DIR
                                     a redacted copy for a subject-access request: request it with a plan
                                     (tracks to blur or keep, boxes, blackouts, mutes, each with a reason),
                                     a second admin approves, then render it with its signed report
  hold place INCIDENT --reason TEXT --reference POLICE-REPORT-NO [--by NAME]
  hold release INCIDENT --reason TEXT [--by NAME]
                                     suspend or restore deletion of an incident
  user add NAME --role ROLE [--password-env VAR] [--by NAME]
                                     add a staff account (password: stdin's first line or VAR); prints its API token
  user disable NAME | passwd NAME | token NAME | revoke-token NAME | list [--json]
                                     disable, reset the password, issue another token, revoke every token, list
  retention sweep [--dry-run]        delete what is past its deadline and not held
  retention extend INCIDENT --category complaint --reason TEXT
                                     lengthen an incident's retention (never shortens)
  bench [--json-out FILE]            stage throughput against the machine's raw cost; exit 1 below a floor
  simulate --rtsp HOST:PORT --cameras N [--duration D] [--credentials FILE]
                                     simulated bodycams publishing real H.264 over RTSP

common flags: --data DIR (default ./data), --catalog DSN (default the SQLite file in --data;
  postgres://USER@HOST/DB selects PostgreSQL: the password from PGPASSWORD, PGPASSFILE or --catalog-password-file)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if args[0] == "help" && len(args) == 2 && known(args[1]) {
		// "camvault help user" is "camvault user --help".
		args = []string{args[1], "--help"}
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "backoffice":
		err = cmdBackoffice(rest, stdout, stderr)
	case "serve":
		err = cmdServe(rest, stdout, stderr)
	case "keygen":
		err = cmdKeygen(rest, stdout, stderr)
	case "camera":
		err = cmdCamera(rest, stdout, stderr)
	case "incidents":
		err = cmdIncidents(rest, stdout, stderr)
	case "alerts":
		err = cmdAlerts(rest, stdout, stderr)
	case "review":
		err = cmdReview(rest, stdout, stderr)
	case "audit":
		err = cmdAudit(rest, stdout, stderr)
	case "export":
		err = cmdExport(rest, stdout, stderr)
	case "verify":
		err = cmdVerify(rest, stdout, stderr)
	case "redact":
		err = cmdRedact(rest, stdout, stderr)
	case "hold":
		err = cmdHold(rest, stdout, stderr)
	case "user":
		err = cmdUser(rest, stdout, stderr)
	case "retention":
		err = cmdRetention(rest, stdout, stderr)
	case "bench":
		err = cmdBench(rest, stdout, stderr)
	case "simulate":
		err = cmdSimulate(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = usagef("unknown command %q", cmd)
	}
	var ue usageError
	var help helpRequested
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errCheckFailed):
		return 1
	case errors.Is(err, errCheckWarned):
		return 3
	case errors.As(err, &help):
		printCommandHelp(stdout, help.fs)
		return 0
	case errors.As(err, &ue):
		if known(args[0]) {
			fmt.Fprintf(stderr, "camvault %s: %v\nsee camvault %s --help\n", args[0], ue.msg, args[0])
		} else {
			fmt.Fprintf(stderr, "camvault: %v\nsee camvault --help\n", ue.msg)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "camvault: %v\n", err)
		return 2
	}
}

// commands are the command names run knows, in the order of usage.
var commands = []string{"serve", "backoffice", "keygen", "camera", "incidents", "alerts", "audit", "review", "export",
	"verify", "redact", "hold", "user", "retention", "bench", "simulate"}

func known(cmd string) bool { return slices.Contains(commands, cmd) }

// parseInterspersed parses flags that may come before or after positional
// arguments, and returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, helpRequested{fs}
			}
			return nil, usageError{flagError(err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// flagError words the flag package's parse errors for a user who typed
// GNU-style --flags: "unknown flag --bogus" rather than "flag provided
// but not defined: -bogus".
func flagError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return "unknown flag -" + name + " (the flags are in --help)"
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return "flag " + name + " needs a value"
	}
	for _, p := range []string{"invalid value ", "invalid boolean value "} {
		if rest, ok := strings.CutPrefix(msg, p); ok {
			rest = strings.Replace(rest, " for flag -", " for -", 1)
			return p + strings.Replace(rest, " for -", " for --", 1)
		}
	}
	return msg
}

// newFlags makes a command's flag set. The flag package itself prints
// nothing: on a parse error it would print the error and every flag,
// and main prints the one line instead (usageError); on --help main
// prints the command's help on stdout (helpRequested).
func newFlags(name string) (*flag.FlagSet, *nodeFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs, addNodeFlags(fs)
}

// printCommandHelp prints a command's lines of the usage text and its
// flags: what "camvault CMD --help" shows.
func printCommandHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage:")
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  "+fs.Name()+" ") || line == "  "+fs.Name():
			in = true
		case strings.HasPrefix(line, "   "):
			// a continuation line: belongs to the command above it
		default:
			in = false
		}
		if in {
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintln(w, "\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// writeJSON prints machine-readable output: indented JSON on stdout.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printList prints a command's list: as JSON with --json, else as a
// table aligned on tabs, head first and then one line (tab-separated
// columns) for each entry; minWidth is the table's narrowest column.
func printList[T any](w io.Writer, asJSON bool, list []T, minWidth int, head string, line func(T) string) error {
	if asJSON {
		return writeJSON(w, orEmpty(list))
	}
	tw := tabwriter.NewWriter(w, minWidth, 4, 2, ' ', 0)
	fmt.Fprintln(tw, head)
	for _, v := range list {
		fmt.Fprintln(tw, line(v))
	}
	return tw.Flush()
}

// orEmpty makes an empty list print as [] rather than null, so scripts
// always get a list.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
