package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"camvault/backoffice"
	"camvault/catalog"
	"camvault/evidence"
	"camvault/keys"
	"camvault/server"
)

const redactForm = "camvault redact detect|request|approve|download|list ..."

// cmdRedact is the redaction workflow from a shell, on the catalog as
// the backoffice does it: detect faces, request a redacted copy with a
// plan, approve it (a second person), and render and hand it out.
func cmdRedact(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("redact")
	identity := fl.String("identity", "", "backoffice identity file (detect, download)")
	reason := fl.String("reason", "", "why (detect, request; for the audit trail)")
	reference := fl.String("reference", "", "the subject-access request's case number (request)")
	planFile := fl.String("plan", "", "the plan, a JSON file (request): {\"session\": ..., \"plan\": {From, To, Tracks, Edits}}; - for stdin")
	out := fl.String("out", "", "a new directory for the redacted bundle, outside the data directory (download)")
	by := fl.String("by", "", "who does it (default: the OS user)")
	asJSON := fl.Bool("json", false, "JSON on stdout (list)")
	sf := addStoreFlags(fl)
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if err := subcommand(pos, redactForm, "detect", "request", "approve", "download", "list"); err != nil {
		return err
	}
	forms := map[string]string{
		"detect":   "camvault redact detect INCIDENT --identity FILE --reason TEXT",
		"request":  "camvault redact request INCIDENT --plan FILE --reason TEXT --reference CASE-NO",
		"approve":  "camvault redact approve REDACTION",
		"download": "camvault redact download REDACTION --identity FILE --out DIR",
		"list":     "camvault redact list [--json]",
	}
	sub, form := pos[0], forms[pos[0]]
	want := 2
	if sub == "list" {
		want = 1
	}
	switch {
	case len(pos) != want:
		return argCount(pos, want, "the incident or redaction", form)
	case (sub == "detect" || sub == "download") && *identity == "":
		return usagef("missing --identity FILE (the backoffice identity): %s", form)
	case (sub == "detect" || sub == "request") && *reason == "":
		return usagef("missing --reason TEXT: %s", form)
	case sub == "request" && *reference == "":
		return usagef("missing --reference (the request's case number): %s", form)
	case sub == "request" && *planFile == "":
		return usagef("missing --plan FILE: %s", form)
	case sub == "download" && *out == "":
		return usagef("missing --out DIR: %s", form)
	}
	n, err := openNode(data, sf, time.Now)
	if err != nil {
		return err
	}
	defer n.Close()
	ctx, who := context.Background(), actor(*by)
	redactor := func() (backoffice.Redactor, error) {
		ids, err := keys.LoadIdentity(*identity)
		if err != nil {
			return nil, err
		}
		signer, err := keys.LoadSigner(n.dir.Keys())
		if err != nil {
			return nil, err
		}
		pub, err := keys.LoadNodePublic(n.dir.NodePub())
		if err != nil {
			return nil, err
		}
		st, err := n.store(ctx)
		if err != nil {
			return nil, err
		}
		return server.NewRedactor(n.cat, st, pub, signer, "", ids), nil
	}
	switch sub {
	case "detect":
		r, err := redactor()
		if err != nil {
			return err
		}
		if _, err := n.cat.Incident(ctx, pos[1]); err != nil {
			return err
		}
		if err := n.cat.AddAudit(ctx, time.Now(), who, "redaction.detected", pos[1], map[string]any{"reason": *reason}); err != nil {
			return err
		}
		tracks, err := r.Detect(ctx, pos[1])
		if err != nil {
			return err
		}
		_, err = stdout.Write(append(tracks, '\n'))
		return err
	case "request":
		plan, err := readPlan(*planFile)
		if err != nil {
			return err
		}
		// The plan is checked as the backoffice checks it.
		if err := server.NewRedactor(nil, nil, nil, nil, "", nil).CheckPlan(plan); err != nil {
			return err
		}
		x, err := n.cat.RequestRedaction(ctx, catalog.Redaction{ExportRequest: catalog.ExportRequest{Incident: pos[1],
			Reason: *reason, Reference: *reference, RequestedBy: who, RequestedAt: time.Now()}, Plan: plan})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, x.ID)
		fmt.Fprintf(stderr, "redaction %s of %s requested by %s; a second admin approves it (camvault redact approve %s)\n", x.ID, pos[1], who, x.ID)
		return nil
	case "approve":
		x, err := n.cat.ApproveRedaction(ctx, pos[1], who, time.Now())
		if errors.Is(err, catalog.ErrSamePerson) {
			return fmt.Errorf("redaction %s: a second admin must approve: whoever requested it cannot", pos[1])
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, x.ID)
		fmt.Fprintf(stderr, "redaction %s approved by %s\n", x.ID, who)
		return nil
	case "download":
		return redactDownload(ctx, n, redactor, pos[1], *out, who, stdout, stderr)
	default:
		list, err := n.cat.Redactions(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tINCIDENT\tSTATE\tREFERENCE\tREQUESTED BY\tAPPROVED BY")
		for _, x := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Incident, x.State, x.Reference, x.RequestedBy, x.ApprovedBy)
		}
		return tw.Flush()
	}
}

// redactDownload renders an approved redaction into out, records it
// ready (or failed) and downloaded. One the server has rendered already
// is downloaded from the backoffice instead.
func redactDownload(ctx context.Context, n *node, redactor func() (backoffice.Redactor, error), id, out, who string, stdout, stderr io.Writer) error {
	x, err := n.cat.Redaction(ctx, id)
	if err != nil {
		return err
	}
	if x.State != catalog.ExportApproved {
		return fmt.Errorf("redaction %s is %s: only an approved one not yet rendered can be rendered here (a ready one downloads from the backoffice)", id, x.State)
	}
	if err := evidence.CheckOutside(n.dir.Root(), out); err != nil {
		return err
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists: name a new directory", out)
	}
	r, err := redactor()
	if err != nil {
		return err
	}
	rerr := r.Render(ctx, x, out)
	if rerr != nil {
		os.RemoveAll(out)
		if err := n.cat.FinishRedaction(ctx, id, false, rerr.Error(), time.Now()); err != nil {
			return errors.Join(rerr, err)
		}
		return rerr
	}
	if err := n.cat.FinishRedaction(ctx, id, true, "", time.Now()); err != nil {
		return err
	}
	if _, err := n.cat.RedactionDownloaded(ctx, id, who, time.Now()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out)
	fmt.Fprintf(stderr, "redaction %s rendered into %s (check it: camvault verify %s)\n", id, out, out)
	return nil
}

func readPlan(path string) (json.RawMessage, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the plan: %w", err)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("the plan %s is not JSON", path)
	}
	return json.RawMessage(b), nil
}
