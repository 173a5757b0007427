// Package s3 is the chunk store on S3-compatible object storage with
// Object Lock: every chunk is written with mode COMPLIANCE and its deadline
// as RetainUntilDate, so the storage server itself, not camvault, refuses
// to delete or overwrite it before the deadline, whoever asks. Legal holds
// are mirrored as S3 legal holds.
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"camvault/storage"
)

// Config of the store.
type Config struct {
	Endpoint  string // host:port
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string // default us-east-1
	Secure    bool   // HTTPS
	// Create makes the bucket, with Object Lock, when it does not exist.
	Create bool
	// Transport, if set, carries the client's requests instead of the
	// default transport (tests put a fault injector here).
	Transport http.RoundTripper
}

// ProbePrefix names the self-test's probe objects; the store's CleanProbes
// deletes them once their short retention has passed.
const ProbePrefix = "camvault-probe/"

// ErrNotEnforced is returned by SelfTest when the server accepts Object
// Lock headers but does not enforce them.
var ErrNotEnforced = errors.New("the S3 server does not enforce Object Lock")

// Store is a storage.ChunkStore on S3 with Object Lock.
type Store struct {
	c      *minio.Client
	bucket string
}

var _ storage.ChunkStore = (*Store)(nil)

// Open connects to the server and checks the bucket has Object Lock.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    cfg.Transport,
		// A blip is retried here (about half a second in all); an outage
		// reaches the caller within a second, whose retries are the policy
		// (the store stage's backoff, counted in its metrics), rather
		// than ten tries nested inside each of the caller's.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %s: %w", cfg.Bucket, err)
	}
	if !ok {
		if !cfg.Create {
			return nil, fmt.Errorf("s3 bucket %s does not exist", cfg.Bucket)
		}
		if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region, ObjectLocking: true}); err != nil {
			return nil, fmt.Errorf("create s3 bucket %s with Object Lock: %w", cfg.Bucket, err)
		}
	}
	lock, _, _, _, err := c.GetObjectLockConfig(ctx, cfg.Bucket)
	if err != nil || lock != "Enabled" {
		return nil, fmt.Errorf("s3 bucket %s has no Object Lock (%q, %v): chunks would not be immutable", cfg.Bucket, lock, err)
	}
	return &Store{c: c, bucket: cfg.Bucket}, nil
}

func notFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NoSuchVersion" || minio.ToErrorResponse(err).StatusCode == http.StatusNotFound
}

func refused(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusForbidden || r.Code == "AccessDenied"
}

// Put writes the object once, locked in COMPLIANCE mode until retainUntil.
func (s *Store) Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if _, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{}); err == nil {
		return fmt.Errorf("put %q: %w", key, storage.ErrExists)
	} else if !notFound(err) {
		return fmt.Errorf("put %q: %w", key, err)
	}
	opts := minio.PutObjectOptions{
		Mode:            minio.Compliance,
		RetainUntilDate: retainUntil.UTC(),
		SendContentMd5:  true, // Object Lock requires an integrity header
		ContentType:     "application/octet-stream",
	}
	// If-None-Match: * makes the write conditional on the server, not only
	// on the stat above: the client's own retry of a PUT that landed but
	// whose answer was lost (a dropped connection, a server restart)
	// fails with 412 instead of adding a second version of the chunk.
	opts.SetMatchETagExcept("*")
	_, err := s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed" {
		return fmt.Errorf("put %q: %w", key, storage.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	return nil
}

// Get reads the object.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	o, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	if _, err := o.Stat(); err != nil {
		o.Close()
		if notFound(err) {
			return nil, fmt.Errorf("get %q: %w", key, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	return o, nil
}

// version returns the current version id of key.
func (s *Store) version(ctx context.Context, key string) (minio.ObjectInfo, error) {
	info, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if notFound(err) {
			return info, fmt.Errorf("%q: %w", key, storage.ErrNotFound)
		}
		return info, fmt.Errorf("%q: %w", key, err)
	}
	return info, nil
}

// Delete permanently removes the object's version. The server refuses
// before the deadline or under legal hold: storage.ErrRetained.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	info, err := s.version(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %w", err)
	}
	// Checked here as well as by the server: versitygw v1.8.0 lets a
	// version under legal hold be deleted once its retention has passed.
	hold, err := s.c.GetObjectLegalHold(ctx, s.bucket, key, minio.GetObjectLegalHoldOptions{VersionID: info.VersionID})
	if err != nil && !notFound(err) && minio.ToErrorResponse(err).Code != "NoSuchObjectLockConfiguration" {
		return fmt.Errorf("delete %q: read legal hold: %w", key, err)
	}
	if hold != nil && *hold == minio.LegalHoldEnabled {
		return fmt.Errorf("delete %q: %w (legal hold)", key, storage.ErrRetained)
	}
	err = s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{VersionID: info.VersionID})
	switch {
	case err == nil:
		return nil
	case refused(err):
		return fmt.Errorf("delete %q: %w (refused by the S3 server: %v)", key, storage.ErrRetained, err)
	default:
		return fmt.Errorf("delete %q: %w", key, err)
	}
}

// RetainUntil reads the object's current lock from its headers.
func (s *Store) RetainUntil(ctx context.Context, key string) (time.Time, error) {
	info, err := s.version(ctx, key)
	if err != nil {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339, info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"))
}

// Extend lengthens the object's retention; an earlier time is ignored.
func (s *Store) Extend(ctx context.Context, key string, retainUntil time.Time) error {
	if err := checkKey(key); err != nil {
		return err
	}
	info, err := s.version(ctx, key)
	if err != nil {
		return fmt.Errorf("extend %w", err)
	}
	if cur, err := time.Parse(time.RFC3339, info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date")); err == nil && !retainUntil.After(cur) {
		return nil
	}
	mode := minio.Compliance
	t := retainUntil.UTC()
	if err := s.c.PutObjectRetention(ctx, s.bucket, key, minio.PutObjectRetentionOptions{Mode: &mode, RetainUntilDate: &t, VersionID: info.VersionID}); err != nil {
		return fmt.Errorf("extend %q: %w", key, err)
	}
	return nil
}

// SetLegalHold places or releases the S3 legal hold.
func (s *Store) SetLegalHold(ctx context.Context, key string, on bool) error {
	if err := checkKey(key); err != nil {
		return err
	}
	info, err := s.version(ctx, key)
	if err != nil {
		return fmt.Errorf("legal hold %w", err)
	}
	status := minio.LegalHoldDisabled
	if on {
		status = minio.LegalHoldEnabled
	}
	if err := s.c.PutObjectLegalHold(ctx, s.bucket, key, minio.PutObjectLegalHoldOptions{VersionID: info.VersionID, Status: &status}); err != nil {
		return fmt.Errorf("legal hold %q: %w", key, err)
	}
	return nil
}

// SelfTest proves the server enforces Object Lock before camvault trusts
// it with evidence: a probe object locked for a few seconds must survive a
// delete of its version and an overwrite byte for byte. Some servers accept
// the headers and enforce nothing, or let the root account bypass them.
func (s *Store) SelfTest(ctx context.Context, now time.Time) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	key := ProbePrefix + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
	want := []byte("camvault object lock probe " + key)
	info, err := s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{
		Mode: minio.Compliance, RetainUntilDate: now.Add(10 * time.Second).UTC(), SendContentMd5: true,
	})
	if err != nil {
		return fmt.Errorf("object lock self-test: put probe: %w", err)
	}
	if info.VersionID == "" {
		return fmt.Errorf("object lock self-test: %w (no object versions)", ErrNotEnforced)
	}
	if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{VersionID: info.VersionID}); err == nil {
		return fmt.Errorf("object lock self-test: %w: a locked version was deleted", ErrNotEnforced)
	} else if !refused(err) {
		return fmt.Errorf("object lock self-test: delete probe: %w", err)
	}
	other := []byte("overwrite attempt")
	s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(other), int64(len(other)), minio.PutObjectOptions{SendContentMd5: true})
	o, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{VersionID: info.VersionID})
	if err != nil {
		return fmt.Errorf("object lock self-test: %w: the locked version is gone: %v", ErrNotEnforced, err)
	}
	got, err := io.ReadAll(o)
	o.Close()
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("object lock self-test: %w: the locked version changed", ErrNotEnforced)
	}
	return nil
}

// CleanProbes deletes self-test probes whose retention has passed.
func (s *Store) CleanProbes(ctx context.Context) (int, error) {
	n := 0
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: ProbePrefix, WithVersions: true, Recursive: true}) {
		if obj.Err != nil {
			return n, obj.Err
		}
		if err := s.c.RemoveObject(ctx, s.bucket, obj.Key, minio.RemoveObjectOptions{VersionID: obj.VersionID}); err == nil {
			n++
		}
	}
	return n, nil
}

// checkKey applies the same key rules as the fs store.
func checkKey(key string) error {
	if key == "" || len(key) > 512 || strings.HasPrefix(key, "/") || strings.Contains(key, "..") || strings.HasPrefix(key, ProbePrefix) {
		return fmt.Errorf("%w: %q", storage.ErrInvalidKey, key)
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '/' || r == '-') {
			return fmt.Errorf("%w: %q", storage.ErrInvalidKey, key)
		}
	}
	return nil
}

// List returns the keys of the current objects under prefix ("" for the
// whole bucket). The self-test's probes are the store's own, cleaned by
// CleanProbes and refused as keys by every other method, so they are
// left out.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, obj.Err)
		}
		if strings.HasPrefix(obj.Key, ProbePrefix) {
			continue
		}
		keys = append(keys, obj.Key)
	}
	return keys, nil
}
