package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"camvault/audit"
	"camvault/keys"
)

// cmdAudit prints the audit trail, one JSON record per line, as stored
// (each names the hash of the one before it); `audit anchor` signs and
// anchors its head, `audit verify` checks it.
func cmdAudit(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("audit")
	pubkey := fl.String("pubkey", "", "verify: node public key, obtained out of band (default <data>/keys/node.pub)")
	asJSON := fl.Bool("json", false, "verify: JSON report on stdout")
	sf := addStoreFlags(fl)
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	sub := ""
	if len(pos) > 0 {
		sub = pos[0]
	}
	const form = "camvault audit [anchor | verify [--pubkey FILE] [--json]]"
	if sub != "" {
		if err := subcommand(pos, form, "anchor", "verify"); err != nil {
			return err
		}
	}
	if len(pos) > 1 {
		return argCount(pos, 1, "", form)
	}
	var pub []byte
	if sub == "verify" {
		// Before opening anything: a missing key is the caller's mistake.
		if pub, err = loadPub(data.dir, *pubkey); err != nil {
			return err
		}
	}
	n, err := openNode(data, sf, time.Now)
	if err != nil {
		return err
	}
	defer n.Close()
	ctx := context.Background()
	if sub == "" {
		lines, err := n.cat.AuditLines(ctx)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if _, err := fmt.Fprintf(stdout, "%s\n", l); err != nil {
				return err
			}
		}
		return nil
	}
	store, err := n.store(ctx)
	if err != nil {
		return err
	}
	if sub == "anchor" {
		signer, err := keys.LoadSigner(n.dir.Keys())
		if err != nil {
			return err
		}
		a := &audit.Anchorer{Catalog: n.cat, Store: store, Signer: signer, Now: time.Now}
		h, ok, err := a.Anchor(ctx)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(stdout, "the audit trail is empty: nothing to sign")
			return nil
		}
		fmt.Fprintf(stdout, "audit head signed at record %d (%s), anchored as %s\n", h.Index, h.Head, audit.AnchorKey(h.Index))
		return nil
	}
	rep, err := audit.Verify(ctx, n.cat, store, pub)
	if err != nil {
		return err
	}
	if *asJSON {
		if rep.Problems == nil {
			rep.Problems = []audit.Problem{}
		}
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if !rep.OK() {
		return errCheckFailed
	}
	return nil
}
