package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/user"
	"time"

	"camvault/catalog"
	"camvault/retention"
)

// actor names who runs an administrative command: --by, else the OS user.
func actor(by string) string {
	if by != "" {
		return by
	}
	if u, err := user.Current(); err == nil {
		return "os:" + u.Username
	}
	return "os:unknown"
}

// clockFlag parses --now: empty is the real clock; an RFC 3339 time or a
// duration from now (e.g. 696h) fixes it, so retention can be rehearsed.
func clockFlag(v string) (func() time.Time, error) {
	if v == "" {
		return time.Now, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		t := time.Now().Add(d)
		return func() time.Time { return t }, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, usagef("--now %q: want an RFC 3339 time or a duration from now", v)
	}
	return func() time.Time { return t }, nil
}

func cmdRetention(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("retention")
	dry := fl.Bool("dry-run", false, "report what is due without deleting")
	nowFlag := fl.String("now", "", "sweep as of this time (RFC 3339 or a duration from now): for rehearsals and tests")
	category := fl.String("category", "", "extend: the longer retention category (complaint: 90 days)")
	reason := fl.String("reason", "", "extend: why (required)")
	by := fl.String("by", "", "extend: who (default: the OS user)")
	sf := addStoreFlags(fl)
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	const extendForm = "camvault retention extend INCIDENT --category NAME --reason TEXT"
	if err := subcommand(pos, "camvault retention sweep [--dry-run] [--now TIME] | retention extend INCIDENT --category NAME --reason TEXT", "sweep", "extend"); err != nil {
		return err
	}
	if pos[0] == "extend" {
		switch {
		case len(pos) != 2:
			return argCount(pos, 2, "the incident", extendForm)
		case *category == "":
			return usagef("missing --category NAME (complaint: 90 days): %s", extendForm)
		case *reason == "":
			return usagef("missing --reason TEXT (why, for the audit trail): %s", extendForm)
		}
		return retentionExtend(pos[1], *category, *reason, actor(*by), data, sf, stdout, stderr)
	}
	if len(pos) != 1 {
		return argCount(pos, 1, "", "camvault retention sweep [--dry-run] [--now TIME]")
	}
	now, err := clockFlag(*nowFlag)
	if err != nil {
		return err
	}
	n, st, err := openNodeStore(data, sf, now)
	if err != nil {
		return err
	}
	defer n.Close()
	// An operator's sweep also lists the store: it is run rarely, and it
	// is how leftovers the catalog does not account for are found.
	// Lock: on a shared catalog, not while a node sweeps it (a dry run
	// changes nothing and needs no turn).
	sw := &retention.Sweeper{Catalog: n.cat, Store: st, Now: now, ScanEvery: -1, Lock: n.cat}
	var res *retention.Result
	ran := true
	if *dry {
		res, err = sw.Sweep(context.Background(), true)
	} else {
		res, ran, err = sw.SweepExclusive(context.Background(), false)
	}
	if err != nil {
		return err
	}
	if !ran {
		return errors.New("another node is sweeping this catalog now; nothing done (try again later)")
	}
	if err := writeJSON(stdout, res); err != nil {
		return err
	}
	verb := "deleted"
	if *dry {
		verb = "due"
	}
	fmt.Fprintf(stderr, "%d chunks (%d bytes) %s; %d incidents deleted and their keys destroyed\n", res.Chunks, res.Bytes, verb, len(res.Incidents))
	if res.Intents > 0 || len(res.Unaccounted) > 0 {
		fmt.Fprintf(stderr, "%d never-committed objects %s; %d objects the catalog does not account for (%d deleted past their deadline)\n",
			res.Intents, verb, len(res.Unaccounted), res.UnaccountedDeleted)
	}
	return nil
}

func cmdHold(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("hold")
	reason := fl.String("reason", "", "why (required)")
	reference := fl.String("reference", "", "police report number (required to place)")
	by := fl.String("by", "", "who places or releases the hold (default: the OS user)")
	sf := addStoreFlags(fl)
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if err := subcommand(pos, "camvault hold place|release INCIDENT --reason TEXT [--reference POLICE-REPORT-NO]", "place", "release"); err != nil {
		return err
	}
	form := "camvault hold release INCIDENT --reason TEXT"
	if pos[0] == "place" {
		form = "camvault hold place INCIDENT --reason TEXT --reference POLICE-REPORT-NO"
	}
	switch {
	case len(pos) != 2:
		return argCount(pos, 2, "the incident", form)
	case *reason == "":
		return usagef("missing --reason TEXT (why, for the audit trail): %s", form)
	case pos[0] == "place" && *reference == "":
		return usagef("missing --reference (the police report number): %s", form)
	}
	n, st, err := openNodeStore(data, sf, time.Now)
	if err != nil {
		return err
	}
	defer n.Close()
	ctx, who := context.Background(), actor(*by)
	if pos[0] == "place" {
		err = retention.PlaceHold(ctx, n.cat, st, catalog.Hold{Incident: pos[1], Reason: *reason, Reference: *reference, PlacedBy: who, PlacedAt: time.Now()})
	} else {
		err = retention.ReleaseHold(ctx, n.cat, st, pos[1], who, *reason, time.Now())
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", pos[1])
	fmt.Fprintf(stderr, "legal hold %s: %s, by %s\n", pos[0], pos[1], who)
	return nil
}

func retentionExtend(incident, category, reason, by string, data *nodeFlags, sf *storeFlags, stdout, stderr io.Writer) error {
	n, st, err := openNodeStore(data, sf, time.Now)
	if err != nil {
		return err
	}
	defer n.Close()
	moved, err := retention.Extend(context.Background(), n.cat, st, incident, category, by, reason, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, incident)
	fmt.Fprintf(stderr, "%s: %d chunk deadlines lengthened to the %s category (%v), by %s\n", incident, moved, category, retention.Categories[category], by)
	return nil
}
