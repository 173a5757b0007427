// Package pgtest gives each test its own PostgreSQL schema in the
// database CAMVAULT_TEST_POSTGRES names (default: the local server's Unix
// socket, role and database that scripts/deps.sh test sets up), created
// empty and dropped at the test's end, so tests run in parallel and leave
// nothing behind. A schema rather than a database each: CREATE DATABASE
// costs a second or more of fsyncs, a schema a few milliseconds, and a
// catalog is one schema (its migration lock included). Under CI=true a server that cannot be reached
// fails the test; elsewhere it skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"camvault/internal/testenv"
)

// EnvDSN names the database the tests use, as a postgres:// URL whose
// role may create schemas in it.
const EnvDSN = "CAMVAULT_TEST_POSTGRES"

// defaultDSN is what scripts/deps.sh test sets up: a superuser role
// named after the user running the tests, over the local Unix socket
// (peer authentication), and the database camvault_test.
func defaultDSN() string {
	name := "root"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return (&url.URL{Scheme: "postgres", User: url.User(name), Path: "/camvault_test", RawQuery: "host=/var/run/postgresql"}).String()
}

// NewCatalog creates an empty schema for t and returns the URL of the
// database with that schema as its search path.
func NewCatalog(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		base = defaultDSN()
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s is not a URL", EnvDSN)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		testenv.Missing(t, fmt.Sprintf("PostgreSQL at %s (scripts/deps.sh test starts it): %v", u.Redacted(), err))
	}
	var b [6]byte
	rand.Read(b[:])
	name := "test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+name+` CASCADE`); err != nil {
			t.Errorf("drop test schema %s: %v", name, err)
		}
	})
	q := u.Query()
	q.Set("search_path", name)
	// Commits do not wait for the WAL's fsync: what a test checks is
	// what the catalog does, not the disk (a crash of the server would
	// lose the last commits, never corrupt them).
	q.Set("synchronous_commit", "off")
	u.RawQuery = q.Encode()
	return u.String()
}
