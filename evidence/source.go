package evidence

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/storage"
)

// maxChunkSize bounds what a verifier reads for one chunk.
const maxChunkSize = 256 << 20

// CatalogSource reads an incident from the catalog and the chunk store.
type CatalogSource struct {
	Catalog *catalog.Catalog
	Store   storage.ChunkStore
	ID      string
}

func (s *CatalogSource) Incident() string { return s.ID }
func (s *CatalogSource) ManifestLines(ctx context.Context) ([][]byte, error) {
	return s.Catalog.ManifestLines(ctx, s.ID)
}
func (s *CatalogSource) CheckpointLines(ctx context.Context) ([][]byte, error) {
	return s.Catalog.CheckpointLines(ctx, s.ID)
}
func (s *CatalogSource) WrappedKeys(ctx context.Context) (map[string][]byte, error) {
	return s.Catalog.WrappedKeys(ctx, s.ID)
}

// Anchors reads the incident's checkpoint anchors from the store, when
// the store can list them.
func (s *CatalogSource) Anchors(ctx context.Context) ([][]byte, error) {
	l, ok := s.Store.(storage.Lister)
	if !ok {
		return nil, nil
	}
	keys, err := l.List(ctx, manifest.AnchorPrefix(s.ID))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, k := range keys {
		b, err := s.Chunk(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("anchor %s: %w", k, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func (s *CatalogSource) Chunk(ctx context.Context, object string) ([]byte, error) {
	rc, err := s.Store.Get(ctx, object)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readBounded(rc)
}

func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxChunkSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxChunkSize {
		return nil, fmt.Errorf("larger than %d bytes", maxChunkSize)
	}
	return b, nil
}

// Bundle file names.
const (
	BundleManifest    = "manifest.jsonl"
	BundleCheckpoints = "checkpoints.jsonl"
	BundleKeys        = "keys.json"
	BundleNodeKeys    = "node_keys.json" // the public key of each node that signed a checkpoint, by node id
	BundleChunks      = "chunks"
	BundleReport      = "report.txt"
	BundleInfo        = "incident.json"
)

// DirSource reads an export bundle.
type DirSource struct {
	Dir string
	ID  string
}

// OpenBundle opens an export bundle directory.
func OpenBundle(dir string) (*DirSource, error) {
	b, err := os.ReadFile(filepath.Join(dir, BundleInfo))
	if err != nil {
		return nil, fmt.Errorf("not an export bundle: %w", err)
	}
	var info struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &info); err != nil || info.ID == "" {
		return nil, fmt.Errorf("not an export bundle: %s is malformed", BundleInfo)
	}
	return &DirSource{Dir: dir, ID: info.ID}, nil
}

func (s *DirSource) Incident() string { return s.ID }
func (s *DirSource) ManifestLines(context.Context) ([][]byte, error) {
	return readLines(filepath.Join(s.Dir, BundleManifest))
}
func (s *DirSource) CheckpointLines(context.Context) ([][]byte, error) {
	return readLines(filepath.Join(s.Dir, BundleCheckpoints))
}
func (s *DirSource) WrappedKeys(context.Context) (map[string][]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, BundleKeys))
	if err != nil {
		return nil, err
	}
	var keys map[string][]byte
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("%s: %w", BundleKeys, err)
	}
	return keys, nil
}
func (s *DirSource) Chunk(_ context.Context, object string) ([]byte, error) {
	p, err := bundleChunkPath(s.Dir, object)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f)
}

// bundleChunkPath maps an object key into the bundle, refusing keys that
// would leave it (a hostile manifest must not make us read elsewhere).
func bundleChunkPath(dir, object string) (string, error) {
	if object == "" || strings.Contains(object, "..") || strings.HasPrefix(object, "/") || strings.ContainsAny(object, "\\\x00") {
		return "", fmt.Errorf("object key %q: %w", object, storage.ErrInvalidKey)
	}
	return filepath.Join(dir, BundleChunks, filepath.FromSlash(object)), nil
}

func readLines(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, append([]byte(nil), line...))
		}
	}
	return out, sc.Err()
}
