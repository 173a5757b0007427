package main

import (
	"flag"
	"fmt"
	"io"
)

// cmdBackoffice runs the backoffice listener alone, beside an ingest node
// started with `serve --identity -`: the identity then lives only in this
// process, which parses no camera input.
func cmdBackoffice(args []string, stdout, stderr io.Writer) error {
	fl, data, bf := newBackofficeFlags()
	if err := parseWithConfig(fl, args); err != nil {
		return err
	}
	if *bf.identity == "-" {
		return usagef("the backoffice process is where the identity belongs: give it one (or leave --identity out)")
	}
	cfg, log, closeStore, err := bf.config(data, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	cfg.BackofficeOnly = true
	srv, err := startServer(cfg, log)
	if err != nil {
		return err
	}
	log.Info("camvault backoffice serving", "http", srv.HTTPAddr(), "data", data.dir)
	fmt.Fprintf(stderr, "backoffice at %s://%s/\n", httpScheme(cfg.TLS), srv.HTTPAddr())
	return runUntilSignal(srv, log, stdout, "ending alert streams")
}

// newBackofficeFlags defines backoffice's flags.
func newBackofficeFlags() (*flag.FlagSet, *nodeFlags, *backofficeFlags) {
	fl, data := newFlags("backoffice")
	bf := addBackofficeFlags(fl, "backoffice identity (default <data>/keys/backoffice.identity)", "serve HTTPS with this certificate (with --tls-key)")
	return fl, data, bf
}
