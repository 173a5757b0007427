package main

import (
	"fmt"
	"io"

	"camvault/server"
)

// cmdBackoffice runs the backoffice listener alone, beside an ingest node
// started with `serve --identity -`: the identity then lives only in this
// process, which parses no camera input.
func cmdBackoffice(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("backoffice", stderr)
	httpAddr := fl.String("http", ":8080", "listen address: the web UI, /api/v1, /metrics, /healthz")
	identity := fl.String("identity", "", "backoffice identity (default <data>/keys/backoffice.identity)")
	exportDir := fl.String("export-dir", "", "where approved exports' bundles are written, outside the data directory (default: exports beside it)")
	tlsCert := fl.String("tls-cert", "", "serve HTTPS with this certificate (with --tls-key)")
	tlsKey := fl.String("tls-key", "", "private key of --tls-cert")
	sf := addStoreFlags(fl)
	af := addAlertFlags(fl)
	logLevel := fl.String("log-level", "info", "debug, info, warn, error")
	if pos, err := parseInterspersed(fl, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usagef("backoffice takes no arguments")
	}
	if *identity == "-" {
		return usagef("the backoffice process is where the identity belongs: give it one (or leave --identity out)")
	}
	log, err := processSetup(*logLevel, stderr)
	if err != nil {
		return err
	}
	alerts, err := af.config()
	if err != nil {
		return err
	}
	tlsConf, err := loadTLS(*tlsCert, *tlsKey)
	if err != nil {
		return err
	}
	store, closeStore, err := serverStore(sf, *data)
	if err != nil {
		return err
	}
	defer closeStore()
	srv, err := server.Open(server.Config{BackofficeOnly: true, DataDir: *data, HTTPAddress: *httpAddr, TLS: tlsConf,
		Store: store, Alerts: alerts, IdentityFile: *identity, ExportDir: *exportDir}, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	log.Info("camvault backoffice serving", "http", srv.HTTPAddr(), "data", *data)
	fmt.Fprintf(stderr, "backoffice at %s://%s/\n", httpScheme(tlsConf), srv.HTTPAddr())
	return runUntilSignal(srv, log, stdout, "ending alert streams")
}
