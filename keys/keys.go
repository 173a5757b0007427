// Package keys creates and loads camvault's key files (their names and
// places in the data directory are datadir's), kept apart so that the
// side that records never holds what decrypts:
//
//	backoffice.identity  age hybrid (ML-KEM-768 + X25519) identity, decrypts footage
//	recipients.txt       its public recipients: all the ingest side gets
//	node.key, node.pub   Ed25519 key that signs manifest checkpoints
//	pepper               HMAC key under which camera secrets are stored
//
// The identity is split from its recipients so that the process that
// parses camera input never holds what decrypts footage: ingest-side
// loaders return recipients only; the identity is loaded by the commands
// that decrypt (review, export, verify --identity) and nothing else.
package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"camvault/datadir"
)

// File names inside the key directory (datadir's layout).
const (
	IdentityFile   = datadir.IdentityFile
	RecipientsFile = datadir.RecipientsFile
	NodeKeyFile    = datadir.NodeKeyFile
	NodePubFile    = datadir.NodePubFile
	PepperFile     = datadir.PepperFile
)

// ErrExists is returned by Generate when keys are already present.
var ErrExists = errors.New("keys already exist")

// Dir returns the key directory of a data directory.
func Dir(dataDir string) string { return datadir.KeyDir(dataDir) }

// Exists reports whether the key directory holds an identity or recipients.
func Exists(dir string) bool {
	for _, f := range []string{IdentityFile, RecipientsFile, NodeKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// Generate creates every key file in dir. It refuses to touch a directory
// that already holds keys: overwriting the identity would make all footage
// sealed so far unreadable.
func Generate(dir string) error {
	if Exists(dir) {
		return fmt.Errorf("generate keys in %s: %w", dir, ErrExists)
	}
	if err := os.MkdirAll(dir, datadir.DirMode); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return fmt.Errorf("generate backoffice identity: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate node key: %w", err)
	}
	pepper := make([]byte, 32)
	if _, err := rand.Read(pepper); err != nil {
		return fmt.Errorf("generate pepper: %w", err)
	}
	files := []struct {
		name string
		data string
		mode fs.FileMode
	}{
		{IdentityFile, "# camvault backoffice identity: decrypts all footage. Keep it secret.\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n", datadir.SecretMode},
		{RecipientsFile, id.Recipient().String() + "\n", datadir.PublicMode},
		{NodeKeyFile, base64.StdEncoding.EncodeToString(priv.Seed()) + "\n", datadir.SecretMode},
		{NodePubFile, base64.StdEncoding.EncodeToString(pub) + "\n", datadir.PublicMode},
		{PepperFile, base64.StdEncoding.EncodeToString(pepper) + "\n", datadir.SecretMode},
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeNew creates path exclusively (never overwriting) and fsyncs it.
func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// LoadRecipients reads the public recipients the ingest side seals to.
func LoadRecipients(dir string) ([]age.Recipient, error) {
	f, err := os.Open(filepath.Join(dir, RecipientsFile))
	if err != nil {
		return nil, fmt.Errorf("open recipients: %w", err)
	}
	defer f.Close()
	rs, err := age.ParseRecipients(f)
	if err != nil {
		return nil, fmt.Errorf("parse recipients: %w", err)
	}
	return rs, nil
}

// LoadIdentity reads an age identity file. It refuses a file that others
// can read, since it decrypts every incident.
func LoadIdentity(path string) ([]age.Identity, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity %s is accessible by other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse identity %s: %w", path, err)
	}
	return ids, nil
}

// LoadSigner reads the node's Ed25519 signing key.
func LoadSigner(dir string) (ed25519.PrivateKey, error) {
	seed, err := readB64(filepath.Join(dir, NodeKeyFile), ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// LoadNodePublic reads an Ed25519 public key file (node.pub format).
func LoadNodePublic(path string) (ed25519.PublicKey, error) {
	b, err := readB64(path, ed25519.PublicKeySize)
	if err != nil {
		return nil, fmt.Errorf("node public key: %w", err)
	}
	return ed25519.PublicKey(b), nil
}

// LoadPepper reads the HMAC key for camera secrets.
func LoadPepper(dir string) ([]byte, error) {
	b, err := readB64(filepath.Join(dir, PepperFile), 32)
	if err != nil {
		return nil, fmt.Errorf("pepper: %w", err)
	}
	return b, nil
}

func readB64(path string, size int) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("%s: malformed (want base64 of %d bytes)", path, size)
	}
	return b, nil
}

// Live-view grant key files: the backoffice signs a live-view grant with
// the private key, and the ingest node checks it with the public one, so
// the node that parses camera input can check grants but never mint one.
const (
	LiveGrantKeyFile = "live_grant.key"
	LiveGrantPubFile = "live_grant.pub"
)

// EnsureLiveGrantKey returns the live-view grant signing key in dir,
// creating the pair on first use (like the other keys, on the first start
// with --live-view). A split deployment may then move the private file to
// the backoffice's host: the ingest node reads only the public one.
func EnsureLiveGrantKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, LiveGrantKeyFile)
	if seed, err := readB64(path, ed25519.SeedSize); err == nil {
		return ed25519.NewKeyFromSeed(seed), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("live grant key: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate live grant key: %w", err)
	}
	if err := writeNew(filepath.Join(dir, LiveGrantPubFile), []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), datadir.PublicMode); err != nil {
		return nil, err
	}
	if err := writeNew(path, []byte(base64.StdEncoding.EncodeToString(priv.Seed())+"\n"), datadir.SecretMode); err != nil {
		return nil, err
	}
	return priv, nil
}

// LoadLiveGrantPublic reads the key the ingest node checks grants with.
func LoadLiveGrantPublic(dir string) (ed25519.PublicKey, error) {
	b, err := readB64(filepath.Join(dir, LiveGrantPubFile), ed25519.PublicKeySize)
	if err != nil {
		return nil, fmt.Errorf("live grant public key: %w", err)
	}
	return ed25519.PublicKey(b), nil
}
