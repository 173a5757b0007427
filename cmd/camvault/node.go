package main

import (
	"context"
	"flag"
	"slices"
	"time"

	"camvault/catalog"
	"camvault/datadir"
)

// node is a data directory opened for one command: its layout, its
// catalog, and the chunk store its flags name. The store opens on first
// use: several commands need the catalog alone, and one that refuses
// because of what the catalog says (a deleted incident) must say so
// whatever the store flags are.
type node struct {
	dir datadir.Layout
	cat *catalog.Catalog

	sf         *storeFlags
	now        func() time.Time
	st         chunkStore
	closeStore func()
}

// openNode opens the catalog the flags name, creating the data
// directory. sf (nil for a command without store flags) and now are the
// store's, for store.
func openNode(data *nodeFlags, sf *storeFlags, now func() time.Time) (*node, error) {
	dir := datadir.New(data.dir)
	if err := dir.Create(); err != nil {
		return nil, err
	}
	dsn, opts, err := data.catalog()
	if err != nil {
		return nil, err
	}
	if dsn == "" {
		if err := dir.CreateCatalog(); err != nil {
			return nil, err
		}
		dsn = dir.Catalog()
	}
	cat, err := catalog.Open(dsn, opts...)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &node{dir: dir, cat: cat, sf: sf, now: now}, nil
}

// store opens the chunk store (once) and returns it.
func (n *node) store(ctx context.Context) (chunkStore, error) {
	if n.st != nil {
		return n.st, nil
	}
	if n.sf == nil {
		n.sf = &storeFlags{kind: "fs"}
	}
	st, closeStore, err := n.sf.open(ctx, n.dir, n.now)
	if err != nil {
		return nil, err
	}
	n.st, n.closeStore = st, closeStore
	return st, nil
}

// openNodeStore is openNode for a command that needs the store at once.
func openNodeStore(data *nodeFlags, sf *storeFlags, now func() time.Time) (*node, chunkStore, error) {
	n, err := openNode(data, sf, now)
	if err != nil {
		return nil, nil, err
	}
	st, err := n.store(context.Background())
	if err != nil {
		n.Close()
		return nil, nil, err
	}
	return n, st, nil
}

// Close closes the store, if it was opened, and the catalog.
func (n *node) Close() {
	if n.closeStore != nil {
		n.closeStore()
	}
	n.cat.Close()
}

// noArgs parses a command that takes flags only.
func noArgs(fl *flag.FlagSet, args []string) error {
	if pos, err := parseInterspersed(fl, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usagef("unexpected argument %q: %s takes flags only", pos[0], fl.Name())
	}
	return nil
}

// argCount is the usage error of a command given the wrong number of
// positional arguments: what is missing, or the first one too many, then
// the command's form, so the one line says how to put it right.
func argCount(pos []string, want int, missing, form string) error {
	if len(pos) < want {
		return usagef("missing %s: %s", missing, form)
	}
	return usagef("unexpected argument %q: %s", pos[want], form)
}

// subcommand checks a command's first positional argument against the
// subcommands it has.
func subcommand(pos []string, form string, subs ...string) error {
	if len(pos) == 0 {
		return usagef("missing what to do: %s", form)
	}
	if !slices.Contains(subs, pos[0]) {
		return usagef("unknown subcommand %q: %s", pos[0], form)
	}
	return nil
}
