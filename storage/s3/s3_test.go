package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"camvault/internal/s3test"
	"camvault/storage"
	"camvault/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.Stop()
	os.Exit(code)
}

var bucketN int

func newStore(t *testing.T) (*Store, *minio.Client) {
	t.Helper()
	g := s3test.Start(t)
	bucketN++
	bucket := fmt.Sprintf("evidence-%d-%d", time.Now().UnixNano()%1e9, bucketN)
	s, err := Open(context.Background(), Config{Endpoint: g.Endpoint, Bucket: bucket, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := minio.New(g.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3test.AccessKey, s3test.SecretKey, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return s, raw
}

func read(t *testing.T, s *Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

func TestPutOnceAndServerEnforcedRetention(t *testing.T) {
	s, raw := newStore(t)
	ctx := context.Background()
	key := "inc-1/ses-1/original/00000001.chunk"
	deadline := time.Now().Add(4 * time.Second)
	if err := s.Put(ctx, key, []byte("sealed chunk"), deadline); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, key, []byte("other"), deadline); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second put: %v", err)
	}
	for _, bad := range []string{"", "../x", "/abs", "a b", ProbePrefix + "x"} {
		if err := s.Put(ctx, bad, []byte("x"), deadline); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("key %q: %v", bad, err)
		}
	}
	if _, err := s.Get(ctx, "inc-1/nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	// camvault's Delete and the raw S3 API, bypassing camvault: refused.
	if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("delete before deadline: %v", err)
	}
	info, err := raw.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true}); err == nil {
		t.Fatal("the S3 server deleted a locked version")
	}
	// Shortening the retention or switching mode: refused by the server.
	earlier := time.Now().Add(time.Second)
	gov := minio.Governance
	if err := raw.PutObjectRetention(ctx, s.bucket, key, minio.PutObjectRetentionOptions{Mode: &gov, RetainUntilDate: &earlier, VersionID: info.VersionID}); err == nil {
		t.Fatal("the S3 server shortened a COMPLIANCE retention")
	}
	// An overwrite through the raw API leaves the locked version intact.
	raw.PutObject(ctx, s.bucket, key, bytes.NewReader([]byte("forged")), 6, minio.PutObjectOptions{SendContentMd5: true})
	o, err := raw.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{VersionID: info.VersionID})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(o); string(b) != "sealed chunk" {
		t.Fatalf("locked version now reads %q", b)
	}
	o.Close()
	// After the deadline (the server keeps its own clock: really wait).
	time.Sleep(time.Until(deadline) + time.Second)
	if err := raw.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{VersionID: info.VersionID}); err != nil {
		t.Fatalf("delete after the deadline: %v", err)
	}
}

func TestLegalHoldAndExtend(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	key := "inc-2/ses-1/original/00000001.chunk"
	deadline := time.Now().Add(3 * time.Second)
	if err := s.Put(ctx, key, []byte("held chunk"), deadline); err != nil {
		t.Fatal(err)
	}
	later := deadline.Add(time.Hour).Truncate(time.Second)
	if err := s.Extend(ctx, key, later); err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(ctx, key, deadline); err != nil { // earlier: ignored
		t.Fatal(err)
	}
	if got, err := s.RetainUntil(ctx, key); err != nil || !got.Equal(later) {
		t.Fatalf("retain until %v (%v), want %v", got, err, later)
	}
	key2 := "inc-2/ses-1/original/00000002.chunk"
	if err := s.Put(ctx, key2, []byte("held chunk 2"), deadline); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLegalHold(ctx, key2, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(deadline) + time.Second)
	if err := s.Delete(ctx, key2); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("delete under legal hold: %v", err)
	}
	if err := s.SetLegalHold(ctx, key2, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key2); err != nil {
		t.Fatalf("delete after release: %v", err)
	}
	if string(read(t, s, key)) != "held chunk" {
		t.Fatal("extended chunk changed")
	}
	if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("delete of an extended chunk: %v", err)
	}
}

func TestSelfTest(t *testing.T) {
	s, _ := newStore(t)
	if err := s.SelfTest(context.Background(), time.Now()); err != nil {
		t.Fatalf("self-test against an enforcing server: %v", err)
	}
	// An endpoint that accepts everything and enforces nothing.
	fake := httptest.NewServer(s3test.NonEnforcing())
	defer fake.Close()
	c, _ := minio.New(strings.TrimPrefix(fake.URL, "http://"), &minio.Options{Creds: credentials.NewStaticV4("a", "b", ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	bad := &Store{c: c, bucket: "evidence"}
	if err := bad.SelfTest(context.Background(), time.Now()); !errors.Is(err, ErrNotEnforced) {
		t.Fatalf("self-test against a non-enforcing server: %v", err)
	}
}

// TestConformance runs the suite every chunk store passes; the S3 server
// keeps its own clock, so deadlines are seconds away and really waited out.
func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.ChunkStore {
			s, _ := newStore(t)
			return s
		},
		Now:   time.Now,
		Short: 3 * time.Second,
		Pass: func(_ *testing.T, until time.Time) {
			time.Sleep(time.Until(until) + 1500*time.Millisecond)
		},
	})
}

// TestProbesCleaned: self-test probes carry a prefix and go once their
// retention has passed; until then they cannot be removed.
func TestProbesCleaned(t *testing.T) {
	s, raw := newStore(t)
	ctx := context.Background()
	if err := s.SelfTest(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	versions := func() int {
		n := 0
		for obj := range raw.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: ProbePrefix, WithVersions: true, Recursive: true}) {
			if obj.Err == nil && !obj.IsDeleteMarker {
				n++
			}
		}
		return n
	}
	// The overwrite attempt's unlocked version goes at once; the locked
	// probe stays until its retention has passed.
	s.CleanProbes(ctx)
	if n := versions(); n != 1 {
		t.Fatalf("%d probe versions right after the self-test, want the locked one", n)
	}
	time.Sleep(11 * time.Second)
	if n, err := s.CleanProbes(ctx); err != nil || n == 0 {
		t.Fatalf("clean probes: %d, %v", n, err)
	}
	if n := versions(); n != 0 {
		t.Fatalf("%d probe versions left", n)
	}
}

// BenchmarkSweepDeletes: permanent deletes of expired chunk versions per
// second through the store (stat, legal-hold check, versioned delete).
func BenchmarkSweepDeletes(b *testing.B) {
	g := s3test.Start(b)
	ctx := context.Background()
	s, err := Open(ctx, Config{Endpoint: g.Endpoint, Bucket: fmt.Sprintf("bench-%d", time.Now().UnixNano()%1e9),
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, Create: true})
	if err != nil {
		b.Fatal(err)
	}
	const n = 300
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; i < n; i++ {
		if err := s.Put(ctx, fmt.Sprintf("inc/%05d.chunk", i), []byte("sealed"), deadline); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(time.Until(deadline) + time.Second)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := s.Delete(ctx, fmt.Sprintf("inc/%05d.chunk", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(n/time.Since(start).Seconds(), "deletes/s")
}
