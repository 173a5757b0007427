package main

import (
	"flag"
	"net/url"
	"os"
	"strings"

	"camvault/catalog"
)

// nodeFlags name a node's state: its data directory (keys, and the
// SQLite catalog and fs store by default) and, with --catalog, a catalog
// elsewhere. The PostgreSQL password never comes from the command line,
// where other users could read it: pgx takes PGPASSWORD or the PGPASSFILE
// file (~/.pgpass), or --catalog-password-file names one.
type nodeFlags struct {
	dir, dsn, passwordFile string
}

func addNodeFlags(fl *flag.FlagSet) *nodeFlags {
	f := &nodeFlags{}
	fl.StringVar(&f.dir, "data", "./data", "data directory")
	fl.StringVar(&f.dsn, "catalog", "", "PostgreSQL catalog: postgres://USER@HOST:PORT/DB?sslmode=... (no password in it; default the SQLite file <data>/catalog.db)")
	fl.StringVar(&f.passwordFile, "catalog-password-file", "", "file holding the PostgreSQL password (else PGPASSWORD or PGPASSFILE)")
	return f
}

// catalog returns the DSN and options to open the catalog with; an
// empty DSN is the SQLite file in the data directory. A DSN carrying a
// password is refused.
func (f *nodeFlags) catalog() (string, []catalog.Option, error) {
	if f.dsn == "" {
		if f.passwordFile != "" {
			return "", nil, usagef("--catalog-password-file is for a PostgreSQL --catalog (postgres://...)")
		}
		return "", nil, nil
	}
	if !catalog.IsPostgres(f.dsn) {
		// A SQLite catalog has one place, the data directory's, whose
		// file modes datadir keeps owner-only.
		return "", nil, usagef("--catalog: a postgres:// or postgresql:// URL (the SQLite catalog, the default, is <data>/catalog.db)")
	}
	u, err := url.Parse(f.dsn)
	if err != nil {
		return "", nil, usagef("--catalog: not a valid postgres:// URL")
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		// Named without its password or parameters, to say which URL.
		shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
		if u.User != nil {
			shown.User = url.User(u.User.Username())
		}
		return "", nil, usagef("--catalog %s: the URL carries a password, which other users can read on the command line; "+
			"remove it and set PGPASSWORD, a PGPASSFILE file or --catalog-password-file FILE", shown.String())
	}
	if f.passwordFile == "" {
		return f.dsn, nil, nil
	}
	b, err := os.ReadFile(f.passwordFile)
	if err != nil {
		return "", nil, usagef("--catalog-password-file: %v", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", nil, usagef("--catalog-password-file %s is empty", f.passwordFile)
	}
	return f.dsn, []catalog.Option{catalog.WithPassword(pw)}, nil
}
