package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStaffSessions: a session ends after its idle time and after its
// absolute lifetime, however busy; it ends with logout, a password change
// and disabling; unknown names are ErrNotFound; changes are audited.
func TestStaffSessions(t *testing.T) { forEachEngine(t, testStaffSessions) }

func testStaffSessions(t *testing.T, e engine) {
	c := openTest(t, e)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	dig := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
	if err := c.AddStaff(ctx, StaffUser{Name: "ann", Role: "admin", PasswordHash: "$argon2id$x"}, dig("tok"), "boss", t0); err != nil {
		t.Fatal(err)
	}
	if err := c.AddStaff(ctx, StaffUser{Name: "ann", Role: "admin", PasswordHash: "h"}, dig("tok2"), "boss", t0); err == nil {
		t.Fatal("a second ann was added")
	}
	const idle, abs = time.Hour, 3 * time.Hour
	if err := c.AddStaffSession(ctx, dig("s1"), "ann", "csrf1", t0); err != nil {
		t.Fatal(err)
	}
	// Used every 50 minutes: alive until the absolute limit.
	for at := t0.Add(50 * time.Minute); at.Before(t0.Add(abs)); at = at.Add(50 * time.Minute) {
		u, csrf, err := c.StaffBySession(ctx, dig("s1"), at, idle, abs)
		if err != nil || u.Name != "ann" || csrf != "csrf1" {
			t.Fatalf("at %v: %+v %q %v", at, u, csrf, err)
		}
	}
	if _, _, err := c.StaffBySession(ctx, dig("s1"), t0.Add(abs+time.Minute), idle, abs); !errors.Is(err, ErrNotFound) {
		t.Fatalf("past the absolute lifetime: %v", err)
	}
	if err := c.AddStaffSession(ctx, dig("s2"), "ann", "csrf2", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.StaffBySession(ctx, dig("s2"), t0.Add(idle+time.Second), idle, abs); !errors.Is(err, ErrNotFound) {
		t.Fatalf("idle too long: %v", err)
	}
	for i, at := range []time.Time{t0, t0.Add(-2 * idle)} {
		if err := c.AddStaffSession(ctx, dig(fmt.Sprint("p", i)), "ann", "c", at); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.PruneStaffSessions(ctx, t0, idle, abs); err != nil || n != 1 {
		t.Fatalf("prune: %d %v, want the one idle session", n, err)
	}
	if _, _, err := c.StaffBySession(ctx, dig("p0"), t0, idle, abs); err != nil {
		t.Fatalf("a live session was pruned: %v", err)
	}
	for i, end := range []func() error{
		func() error { return c.EndStaffSession(ctx, dig("s3")) },
		func() error { return c.SetStaffPassword(ctx, "ann", "$argon2id$y", "boss", t0) },
		func() error { return c.DisableStaff(ctx, "ann", "boss", t0) },
	} {
		if err := c.AddStaffSession(ctx, dig("s3"), "ann", "c", t0); err != nil {
			t.Fatal(err)
		}
		if err := end(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.StaffBySession(ctx, dig("s3"), t0, idle, abs); !errors.Is(err, ErrNotFound) {
			t.Fatalf("end %d: session still alive: %v", i, err)
		}
	}
	if _, err := c.StaffByToken(ctx, dig("tok")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token of a disabled user: %v", err)
	}
	for _, err := range []error{
		c.DisableStaff(ctx, "bob", "boss", t0),
		c.SetStaffPassword(ctx, "bob", "h", "boss", t0),
		c.AddStaffToken(ctx, "bob", dig("t"), "boss", t0),
		c.RevokeStaffTokens(ctx, "bob", "boss", t0),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("change to an unknown user: %v, want ErrNotFound", err)
		}
	}
	lines, err := c.AuditLines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := string(bytes.Join(lines, []byte("\n")))
	for _, a := range []string{"user.add", "user.passwd", "user.disable"} {
		if !strings.Contains(all, `"action":"`+a+`"`) {
			t.Errorf("no %s record", a)
		}
	}
	if strings.Contains(all, "argon2id") {
		t.Error("a password hash is in the audit trail")
	}
}
