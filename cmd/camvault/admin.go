package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"filippo.io/age"

	"camvault/camera"
	"camvault/catalog"
	"camvault/datadir"
	"camvault/evidence"
	"camvault/keys"
)

func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("keygen")
	if err := noArgs(fl, args); err != nil {
		return err
	}
	dir := datadir.New(data.dir)
	if err := keys.Generate(dir.Keys()); err != nil {
		return err
	}
	rs, err := os.ReadFile(dir.Recipients())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s", rs)
	fmt.Fprintf(stderr, "keys created in %s; %s decrypts all footage: keep it secret, ideally elsewhere (--identity FILE)\n", dir.Keys(), datadir.IdentityFile)
	return nil
}

func cmdCamera(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("camera")
	officer := fl.String("officer", "", "officer wearing the camera")
	by := fl.String("by", "", "who does this, for the audit trail (default the OS user)")
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if err := subcommand(pos, "camvault camera add ID --officer NAME | camera revoke ID | camera rotate ID", "add", "revoke", "rotate"); err != nil {
		return err
	}
	if len(pos) != 2 {
		form := "camvault camera " + pos[0] + " ID"
		if pos[0] == "add" {
			form += " --officer NAME"
		}
		return argCount(pos, 2, "the camera ID", form)
	}
	id := pos[1]
	switch pos[0] {
	case "revoke":
		n, err := openNode(data, nil, nil)
		if err != nil {
			return err
		}
		defer n.Close()
		if err := n.cat.RevokeCamera(context.Background(), id, actor(*by), time.Now()); err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
		fmt.Fprintf(stderr, "camera %s revoked: refused from its next connection on\n", id)
		return nil
	case "rotate":
		secret, err := rotateCamera(context.Background(), data, id, actor(*by))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, secret)
		fmt.Fprintf(stderr, "camera %s has a new secret (above, shown only this once); the old one is refused from the next connection on\n", id)
		return nil
	}
	if !camera.ValidID(id) {
		return usagef("camera id %q: use 1-64 of a-z 0-9 _ - (starting with a letter or digit)", id)
	}
	if *officer == "" {
		return usagef("missing --officer NAME (who wears the camera): camvault camera add %s --officer NAME", id)
	}
	secret, err := addCamera(context.Background(), data, id, *officer, actor(*by))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, secret)
	fmt.Fprintf(stderr, "camera %s registered; its secret (above) is shown only this once\n", id)
	return nil
}

// addCamera registers a camera and returns its new secret.
func addCamera(ctx context.Context, data *nodeFlags, id, officer, by string) (string, error) {
	return withNewSecret(data, func(cat *catalog.Catalog, mac []byte) error {
		return cat.AddCamera(ctx, catalog.Camera{ID: id, Officer: officer, SecretMAC: mac, CreatedAt: time.Now(), AddedBy: by})
	})
}

// rotateCamera gives a camera a new secret and returns it.
func rotateCamera(ctx context.Context, data *nodeFlags, id, by string) (string, error) {
	return withNewSecret(data, func(cat *catalog.Catalog, mac []byte) error {
		return cat.RotateCameraSecret(ctx, id, mac, by, time.Now())
	})
}

// withNewSecret draws a camera secret, lets store record its MAC, and
// returns the secret (to be shown once) if that succeeded.
func withNewSecret(data *nodeFlags, store func(*catalog.Catalog, []byte) error) (string, error) {
	pepper, err := keys.LoadPepper(datadir.New(data.dir).Keys())
	if err != nil {
		return "", fmt.Errorf("%w (run camvault keygen first)", err)
	}
	n, err := openNode(data, nil, nil)
	if err != nil {
		return "", err
	}
	defer n.Close()
	secret, err := camera.NewSecret()
	if err != nil {
		return "", err
	}
	if err := store(n.cat, camera.SecretMAC(pepper, secret)); err != nil {
		return "", err
	}
	return secret, nil
}

func cmdIncidents(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("incidents")
	asJSON := fl.Bool("json", false, "JSON output")
	if err := noArgs(fl, args); err != nil {
		return err
	}
	n, err := openNode(data, nil, nil)
	if err != nil {
		return err
	}
	defer n.Close()
	list, err := n.cat.Incidents(context.Background())
	if err != nil {
		return err
	}
	return printList(stdout, *asJSON, list, 2, "INCIDENT\tCAMERA\tOFFICER\tSTARTED\tSTATUS\tCHUNKS\tBYTES\tDELETE AFTER", func(in catalog.Incident) string {
		until := "-"
		switch {
		case in.Held:
			until = "held"
		case in.RetainUntil != nil:
			until = in.RetainUntil.Format("2006-01-02")
		}
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s", in.ID, in.Camera, in.Officer, in.StartedAt.Format(time.RFC3339), in.Status, in.Chunks, in.Bytes, until)
	})
}

// cmdAlerts prints the alert outbox: what the backoffice is told.
func cmdAlerts(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("alerts")
	asJSON := fl.Bool("json", false, "JSON output")
	after := fl.Int64("after", 0, "only alerts with an id above this")
	if err := noArgs(fl, args); err != nil {
		return err
	}
	n, err := openNode(data, nil, nil)
	if err != nil {
		return err
	}
	defer n.Close()
	list, err := n.cat.AlertsAfter(context.Background(), *after, 100000)
	if err != nil {
		return err
	}
	return printList(stdout, *asJSON, list, 2, "ID\tAT\tTYPE\tCAMERA\tINCIDENT\tDATA", func(a catalog.Alert) string {
		d, _ := json.Marshal(a.Data)
		return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s", a.ID, a.At.Format(time.RFC3339Nano), a.Type, a.Camera, a.Incident, d)
	})
}

func cmdExport(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("export")
	identity := fl.String("identity", "", "backoffice identity file (required)")
	out := fl.String("out", "", "export directory, outside the data directory (required)")
	var pubkeys pubkeyFlag
	fl.Var(&pubkeys, "pubkey", "node public key file (node.pub) or node keys file (node_keys.json), repeatable (default <data>/keys/node.pub and the catalog's registered nodes)")
	sf := addStoreFlags(fl)
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	const form = "camvault export INCIDENT --identity FILE --out DIR"
	switch {
	case len(pos) != 1:
		return argCount(pos, 1, "the incident", form)
	case *identity == "":
		return usagef("missing --identity FILE (the backoffice identity, <data>/keys/backoffice.identity by default): %s", form)
	case *out == "":
		return usagef("missing --out DIR (a new directory for the bundle, outside the data directory): %s", form)
	}
	ids, err := keys.LoadIdentity(*identity)
	if err != nil {
		return err
	}
	n, err := openNode(data, sf, time.Now)
	if err != nil {
		return err
	}
	defer n.Close()
	ctx := context.Background()
	nodeKeys, err := loadNodeKeys(ctx, data.dir, pubkeys, n.cat)
	if err != nil {
		return err
	}
	info, err := n.cat.Incident(ctx, pos[0])
	if err != nil {
		return err
	}
	if info.Status == catalog.StatusDeleted {
		at, _ := n.cat.DeletedAt(ctx, pos[0])
		return fmt.Errorf("incident %s was deleted by retention on %s: its chunks are gone and its keys destroyed", pos[0], at.Format("2006-01-02"))
	}
	st, err := n.store(ctx)
	if err != nil {
		return err
	}
	src := &evidence.CatalogSource{Catalog: n.cat, Store: st, ID: pos[0]}
	rep, files, err := evidence.Export(ctx, src, evidence.ExportOptions{
		DataDir: data.dir, OutDir: *out, NodeKeys: nodeKeys, Identities: ids, Info: info, Exporter: newExporter(),
	})
	if rep != nil && !rep.OK() {
		rep.WriteText(stderr)
		return errCheckFailed
	}
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintln(stdout, f)
	}
	fmt.Fprintf(stderr, "exported %s to %s (%d chunks verified)\n", pos[0], *out, rep.Chunks)
	return nil
}

func loadPub(data, path string) ([]byte, error) {
	if path == "" {
		path = datadir.New(data).NodePub()
	}
	return keys.LoadNodePublic(path)
}

// pubkeyFlag is a repeatable --pubkey.
type pubkeyFlag []string

func (p *pubkeyFlag) String() string     { return strings.Join(*p, ",") }
func (p *pubkeyFlag) Set(v string) error { *p = append(*p, v); return nil }

// loadNodeKeys reads the node keys checkpoints are checked against: each
// --pubkey file, a node.pub (a key without its node) or a node keys file
// (a JSON object of base64 keys by node id, as an export's node_keys.json
// lists them); without any, <data>/keys/node.pub and, when cat is not nil,
// the keys of the nodes registered in the catalog.
func loadNodeKeys(ctx context.Context, data string, paths []string, cat *catalog.Catalog) (evidence.NodeKeys, error) {
	var nk evidence.NodeKeys
	if len(paths) == 0 {
		pub, err := loadPub(data, "")
		if err != nil && cat == nil {
			return nk, err
		}
		if err == nil {
			nk.Any = append(nk.Any, pub)
		}
		if cat != nil {
			if nk.ByNode, err = cat.NodeKeys(ctx); err != nil {
				return nk, err
			}
		}
		if len(nk.Any) == 0 && len(nk.ByNode) == 0 {
			return nk, errors.New("no node public key: give --pubkey FILE")
		}
		return nk, nil
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nk, fmt.Errorf("node public key: %w", err)
		}
		if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
			pub, err := keys.LoadNodePublic(p)
			if err != nil {
				return nk, err
			}
			nk.Any = append(nk.Any, pub)
			continue
		}
		var byNode map[string][]byte
		if err := json.Unmarshal(b, &byNode); err != nil {
			return nk, fmt.Errorf("node keys file %s: %w", p, err)
		}
		for node, pub := range byNode {
			if len(pub) != ed25519.PublicKeySize {
				return nk, fmt.Errorf("node keys file %s: the key of %q is not an Ed25519 public key", p, node)
			}
			if nk.ByNode == nil {
				nk.ByNode = map[string]ed25519.PublicKey{}
			}
			nk.ByNode[node] = pub
		}
	}
	return nk, nil
}

func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("verify")
	identity := fl.String("identity", "", "backoffice identity: also check AEAD tags and plaintext hashes")
	var pubkeys pubkeyFlag
	fl.Var(&pubkeys, "pubkey", "node public key, obtained out of band: a node.pub file, or a node keys file (JSON, node id to base64 key); repeatable (default <data>/keys/node.pub; for an incident also the catalog's registered nodes)")
	asJSON := fl.Bool("json", false, "JSON report on stdout")
	sf := addStoreFlags(fl)
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return argCount(pos, 1, "the export directory or incident", "camvault verify DIR|INCIDENT [--identity FILE] [--pubkey FILE]...")
	}
	var ids []age.Identity
	if *identity != "" {
		if ids, err = keys.LoadIdentity(*identity); err != nil {
			return err
		}
	}
	ctx := context.Background()
	var src evidence.Source
	var bundle *evidence.DirSource
	var nodeKeys evidence.NodeKeys
	if st, err := os.Stat(pos[0]); err == nil && st.IsDir() {
		if evidence.IsRedactedBundle(pos[0]) {
			return verifyRedacted(ctx, pos[0], data.dir, pubkeys, *asJSON, stdout)
		}
		if bundle, err = evidence.OpenBundle(pos[0]); err != nil {
			return err
		}
		src = bundle
		if nodeKeys, err = loadNodeKeys(ctx, data.dir, pubkeys, nil); err != nil {
			return err
		}
	} else {
		n, err := openNode(data, sf, time.Now)
		if err != nil {
			return err
		}
		defer n.Close()
		info, err := n.cat.Incident(ctx, pos[0])
		if err != nil {
			if errors.Is(err, catalog.ErrNotFound) {
				return usagef("%s is neither an export directory nor an incident in %s (camvault incidents --data %s lists them)", pos[0], data.dir, data.dir)
			}
			return err
		}
		if info.Status == catalog.StatusDeleted {
			at, _ := n.cat.DeletedAt(ctx, pos[0])
			fmt.Fprintf(stdout, "incident %s was deleted by retention on %s: nothing left to verify\n", pos[0], at.Format("2006-01-02"))
			return errCheckFailed
		}
		store, err := n.store(ctx)
		if err != nil {
			return err
		}
		src = &evidence.CatalogSource{Catalog: n.cat, Store: store, ID: pos[0]}
		if nodeKeys, err = loadNodeKeys(ctx, data.dir, pubkeys, n.cat); err != nil {
			return err
		}
	}
	rep, err := evidence.Verify(ctx, src, nodeKeys, ids)
	if err != nil {
		return err
	}
	if bundle != nil && rep.Decrypted && rep.OK() {
		if err := evidence.VerifyMedia(ctx, rep, bundle, readMedia); err != nil {
			return err
		}
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(rep)
	} else {
		rep.Program = programPath()
		rep.WriteText(stdout)
	}
	if !rep.OK() {
		return errCheckFailed
	}
	if rep.Warned() {
		// OK, but not a plain OK: scripts that archive or export on
		// exit 0 should wait for the node's retry to anchor the records.
		return errCheckWarned
	}
	return nil
}

// verifyRedacted checks a redacted bundle (a subject-access request's
// copy): the report's signature with the node keys given out of band, the
// manifest and its checkpoints, the chunks the report names and the MP4.
func verifyRedacted(ctx context.Context, dir, data string, pubkeys []string, asJSON bool, stdout io.Writer) error {
	nodeKeys, err := loadNodeKeys(ctx, data, pubkeys, nil)
	if err != nil {
		return err
	}
	check, err := evidence.VerifyRedactedBundle(ctx, dir, nodeKeys)
	if err != nil {
		return err
	}
	if asJSON {
		json.NewEncoder(stdout).Encode(map[string]any{"ok": check.OK(), "problems": check.Problems, "report": check.Report})
	} else {
		if r := check.Report; r != nil {
			fmt.Fprintf(stdout, "redacted copy of incident %s, session %s (reference %s)\n", r.Incident, r.Session, r.Reference)
			fmt.Fprintf(stdout, "requested by %s, approved by %s; made from %d original chunks; %d tracks, %d edits\n",
				r.RequestedBy, r.ApprovedBy, len(r.Chunks), len(r.Tracks), len(r.Edits))
		}
		for _, p := range check.Problems {
			fmt.Fprintf(stdout, "FAIL: %s\n", p)
		}
		if check.OK() {
			fmt.Fprintln(stdout, "OK: the report's signature verifies and every chunk it names is in the verified manifest")
		}
	}
	if !check.OK() {
		return errCheckFailed
	}
	return nil
}
