// Package datadir is the layout of a node's data directory: where the
// catalog, the fs chunk store and the key files live, the default export
// directory, and the modes they are created with. Every process and
// command of a node finds its files here, so two of them sharing a data
// directory (serve beside backoffice, a CLI command beside serve) cannot
// disagree about a path.
//
//	<data>/catalog.db                  the SQLite catalog (with its -wal and -shm files)
//	<data>/chunks/                     the fs chunk store
//	<data>/reserve                     space kept for the catalog, released when the disk fills
//	<data>/keys/backoffice.identity    decrypts footage
//	<data>/keys/recipients.txt         its public recipients: all the ingest side gets
//	<data>/keys/node.key, node.pub     the node's Ed25519 signing key
//	<data>/keys/pepper                 HMAC key under which camera secrets are stored
//	<data>/../exports/                 approved exports' bundles, by default
//
// It imports nothing of camvault, so any package may use it.
package datadir

import (
	"fmt"
	"os"
	"path/filepath"
)

// File and directory names inside the data directory.
const (
	CatalogFile = "catalog.db"
	ChunksDir   = "chunks"
	ReserveFile = "reserve"
	KeysDir     = "keys"
	// ExportsDir is the default export directory's name, beside (never
	// inside) the data directory: bundles hold plaintext.
	ExportsDir = "exports"
)

// Key file names inside the key directory.
const (
	IdentityFile   = "backoffice.identity"
	RecipientsFile = "recipients.txt"
	NodeKeyFile    = "node.key"
	NodePubFile    = "node.pub"
	PepperFile     = "pepper"
)

// Modes. The data directory holds the catalog (camera secret MACs, wrapped
// data keys) and the key directory holds secrets, so nothing in it is open
// to other users. Public key files hold nothing secret, but nobody other
// than the node's user has business in its data directory: they are
// owner-only too, and whoever needs node.pub gets a copy out of band.
const (
	DirMode    os.FileMode = 0o700
	SecretMode os.FileMode = 0o600
	PublicMode os.FileMode = 0o600
)

// Layout is a data directory's paths. The zero value is not useful; make
// one with New.
type Layout struct {
	root string
}

// New returns the layout of the data directory at root.
func New(root string) Layout { return Layout{root: root} }

// Root is the data directory itself.
func (l Layout) Root() string { return l.root }

// Create makes the data directory (mode DirMode) if it does not exist.
func (l Layout) Create() error {
	if err := os.MkdirAll(l.root, DirMode); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	return nil
}

// Catalog is the path of the SQLite catalog.
func (l Layout) Catalog() string { return filepath.Join(l.root, CatalogFile) }

// CreateCatalog creates the catalog file, empty and with SecretMode, if it
// does not exist yet; an existing one is left as it is. SQLite would
// create it 0644 (less the umask), and it gives the -wal and -shm files
// it creates beside it the database file's mode: creating the file first
// makes all three owner-only, whatever the process's umask.
func (l Layout) CreateCatalog() error {
	f, err := os.OpenFile(l.Catalog(), os.O_RDONLY|os.O_CREATE, SecretMode)
	if err != nil {
		return fmt.Errorf("create catalog: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create catalog: %w", err)
	}
	return nil
}

// Chunks is the fs chunk store's directory.
func (l Layout) Chunks() string { return filepath.Join(l.root, ChunksDir) }

// Reserve is the catalog's disk reserve: a preallocated file that
// `serve` removes when the disk fills, so the catalog can still record
// what is lost, and re-creates when space returns.
func (l Layout) Reserve() string { return filepath.Join(l.root, ReserveFile) }

// Keys is the key directory.
func (l Layout) Keys() string { return KeyDir(l.root) }

// Identity is the default backoffice identity file.
func (l Layout) Identity() string { return filepath.Join(l.Keys(), IdentityFile) }

// Recipients is the file of the identity's public recipients.
func (l Layout) Recipients() string { return filepath.Join(l.Keys(), RecipientsFile) }

// NodeKey is the node's Ed25519 signing key file.
func (l Layout) NodeKey() string { return filepath.Join(l.Keys(), NodeKeyFile) }

// NodePub is the node's Ed25519 public key file.
func (l Layout) NodePub() string { return filepath.Join(l.Keys(), NodePubFile) }

// Pepper is the file of the HMAC key camera secrets are stored under.
func (l Layout) Pepper() string { return filepath.Join(l.Keys(), PepperFile) }

// DefaultExportDir is where approved exports go unless told otherwise:
// "exports" beside the data directory, made absolute so that it does not
// move with the working directory.
func (l Layout) DefaultExportDir() (string, error) {
	abs, err := filepath.Abs(l.root)
	if err != nil {
		return "", fmt.Errorf("export dir beside %s: %w", l.root, err)
	}
	return filepath.Join(filepath.Dir(abs), ExportsDir), nil
}

// KeyDir is the key directory of the data directory at root.
func KeyDir(root string) string { return filepath.Join(root, KeysDir) }
