package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"camvault/codec"
	"camvault/evidence"
	"camvault/keys"
	"camvault/review"
)

// cmdReview writes one segment's review proxy (fMP4) to stdout for a
// player: `camvault review INC --seq 3 ... | ffplay -`. The footage never
// touches disk; the view is recorded in the audit trail with its reason.
func cmdReview(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("review")
	identity := fl.String("identity", "", "backoffice identity file (required)")
	seq := fl.Uint64("seq", 0, "the segment: its original chunk's sequence number, from 1 (required)")
	session := fl.String("session", "", "the session (default: the first with that segment)")
	reason := fl.String("reason", "", "why you watch this footage (required, recorded in the audit trail)")
	by := fl.String("by", "", "who watches (recorded in the audit trail; default: the OS user)")
	sf := addStoreFlags(fl)
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	const form = "camvault review INCIDENT --seq N --identity FILE --reason TEXT [--by NAME] | ffplay -"
	switch {
	case len(pos) != 1:
		return argCount(pos, 1, "the incident", form)
	case *seq == 0:
		return usagef("missing --seq N (the segment, from 1): %s", form)
	case *identity == "":
		return usagef("missing --identity FILE (the backoffice identity): %s", form)
	case *reason == "":
		return usagef("missing --reason TEXT (why you watch, for the audit trail): %s", form)
	}
	if f, ok := stdout.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return usagef("review writes video to stdout: pipe it into a player (| ffplay -)")
		}
	}
	ids, err := keys.LoadIdentity(*identity)
	if err != nil {
		return err
	}
	n, st, err := openNodeStore(data, sf, time.Now)
	if err != nil {
		return err
	}
	defer n.Close()
	v := &review.Reviewer{Identities: ids, Renderer: codec.NewProxyRenderer(codec.ProxyConfig{}), Audit: n.cat}
	r, err := v.Proxy(context.Background(), &evidence.CatalogSource{Catalog: n.cat, Store: st, ID: pos[0]},
		review.Request{Incident: pos[0], Session: *session, Seq: *seq, Viewer: actor(*by), Reason: *reason})
	if err != nil {
		return err
	}
	if _, err := stdout.Write(r.Init); err != nil {
		return err
	}
	if _, err := stdout.Write(r.Segment); err != nil {
		return err
	}
	if r.OnDemand {
		fmt.Fprintf(stderr, "segment %d of %s: proxy made now from original chunk %s (none was stored)\n", *seq, pos[0], r.Original)
	} else {
		fmt.Fprintf(stderr, "segment %d of %s: stored review proxy\n", *seq, pos[0])
	}
	return nil
}
