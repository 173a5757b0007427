package main

import (
	"fmt"
	"io"
	"os"

	"github.com/asticode/go-astiav"

	"camvault/bench"
)

// cmdBench measures each stage against the machine's raw cost of the same
// work in the same run, prints a Markdown table, and fails (exit 1) when a
// ratio falls below its floor in bench/floors.json.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	fl, _ := newFlags("bench")
	out := fl.String("json-out", "", "also write the report as JSON here")
	rounds := fl.Int("rounds", bench.DefaultRounds.Pairs, fmt.Sprintf("alternating (camvault, raw) pairs per measurement; at least %d", bench.MinPairs))
	retries := fl.Int("retries", bench.DefaultRounds.Retries, "re-measurements of a ratio below its floor before it fails")
	if err := noArgs(fl, args); err != nil {
		return err
	}
	// x264's statistics would bury the table.
	astiav.SetLogLevel(astiav.LogLevelError)
	work, err := os.MkdirTemp("", "camvault-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	rep, err := bench.RunRatios(work, bench.Rounds{Pairs: *rounds, Retries: *retries})
	if err != nil {
		return err
	}
	rep.WriteMarkdown(stdout)
	if *out != "" {
		if err := rep.WriteJSON(*out); err != nil {
			return err
		}
	}
	if len(rep.Failing) > 0 {
		fmt.Fprintf(stderr, "camvault bench: %d ratio(s) below their floor\n", len(rep.Failing))
		return errCheckFailed
	}
	return nil
}
