package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"camvault/internal/s3test"
	"camvault/pipeline"
	"camvault/storage"
	"camvault/storage/faultstore"
	"camvault/storage/fs"
	"camvault/storage/s3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.Stop()
	os.Exit(code)
}

// faultCase is one fault programme and what a put under it must come to.
type faultCase struct {
	name string
	set  func(f *faultstore.Faults)
	// visibleOK: a failed attempt may leave the object readable (it did
	// land, only its answer was lost).
	visibleOK bool
	// below: the fault is ridden out under the writer (the S3 client
	// retries a request by itself), so the writer need not see it.
	below bool
	seed  uint64 // of the fault programme; default 1
}

// faultedStore is a real store with a fault programme at every seam it has.
type faultedStore struct {
	st       storage.ChunkStore // the wrapper the writer uses
	real     storage.ChunkStore // underneath, for checking
	versions func(t *testing.T, key string) int
}

func newFaultedFS(t *testing.T, f *faultstore.Faults) faultedStore {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "chunks")
	st, err := fs.Open(dir, fs.WithFileOps(fs.FileOps{Write: f.WriteFile, Sync: f.SyncFile}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return faultedStore{st: faultstore.Wrap(st, f), real: st, versions: func(t *testing.T, key string) int {
		keys, err := st.List(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, k := range keys {
			if k == key {
				n++
			}
		}
		return n
	}}
}

var buckets sync.Map

func newFaultedS3(t *testing.T, f *faultstore.Faults) faultedStore {
	t.Helper()
	g := s3test.Start(t)
	bucket := fmt.Sprintf("faults-%d", time.Now().UnixNano()%1e12)
	if _, dup := buckets.LoadOrStore(bucket, true); dup {
		t.Fatalf("bucket %s twice", bucket)
	}
	st, err := s3.Open(context.Background(), s3.Config{Endpoint: g.Endpoint, Bucket: bucket, AccessKey: s3test.AccessKey,
		SecretKey: s3test.SecretKey, Create: true, Transport: f.Transport(nil)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := minio.New(g.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3test.AccessKey, s3test.SecretKey, ""),
		Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return faultedStore{st: faultstore.Wrap(st, f), real: st, versions: func(t *testing.T, key string) int {
		n := 0
		for o := range raw.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true, Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if o.Key == key && !o.IsDeleteMarker {
				n++
			}
		}
		return n
	}}
}

// TestWriterRidesOutFaultsOfTheRealStores: over the real fs store and the
// real S3 server, a put that fails (refused, hung, cut off midway, its
// fsync failing, or landed with its answer lost, and the check of it
// failing too) leaves no readable object behind, is retried with
// backoff, and ends with the chunk stored exactly once: one object (one
// S3 version), its bytes, its deadline; the retry metrics count it.
func TestWriterRidesOutFaultsOfTheRealStores(t *testing.T) {
	common := []faultCase{
		{name: "errors", set: func(f *faultstore.Faults) { f.Set(faultstore.Put, faultstore.Fault{Times: 3}) }},
		{name: "random-errors", seed: 8, set: func(f *faultstore.Faults) { f.Set(faultstore.Put, faultstore.Fault{Prob: 0.5, Times: 4}) }},
		{name: "stall-past-timeout", set: func(f *faultstore.Faults) {
			f.Set(faultstore.Put, faultstore.Fault{Stall: time.Second, StallOnly: true, Times: 2})
		}},
		{name: "landed-answer-lost", visibleOK: true, set: func(f *faultstore.Faults) {
			f.Set(faultstore.Put, faultstore.Fault{Landed: true, Times: 1})
		}},
		{name: "landed-then-check-fails", visibleOK: true, set: func(f *faultstore.Faults) {
			f.Set(faultstore.Put, faultstore.Fault{Landed: true, Times: 1})
			f.Set(faultstore.Get, faultstore.Fault{Times: 2})
		}},
	}
	backends := []struct {
		name  string
		open  func(*testing.T, *faultstore.Faults) faultedStore
		cases []faultCase
	}{
		{"fs", newFaultedFS, append([]faultCase{
			{name: "partial-write", set: func(f *faultstore.Faults) { f.Set(faultstore.Write, faultstore.Fault{After: 1000, Times: 2}) }},
			{name: "fsync-file", set: func(f *faultstore.Faults) { f.Set(faultstore.Sync, faultstore.Fault{Times: 2}) }},
			// The second fsync of a put is its directory's, after the link.
			{name: "fsync-dir", set: func(f *faultstore.Faults) { f.Set(faultstore.Sync, faultstore.Fault{Skip: 1, Times: 1}) }},
		}, common...)},
		{"s3", newFaultedS3, append([]faultCase{
			{name: "upload-cut-midway", below: true, set: func(f *faultstore.Faults) { f.Set(faultstore.Upload, faultstore.Fault{After: 1000, Times: 2}) }},
			// The client retries a PUT whose answer was lost by itself;
			// only the conditional write keeps that from a second version.
			{name: "upload-landed-answer-lost", visibleOK: true, below: true, set: func(f *faultstore.Faults) {
				f.Set(faultstore.Upload, faultstore.Fault{Landed: true, Times: 1})
			}},
		}, common...)},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for i, c := range b.cases {
				t.Run(c.name, func(t *testing.T) {
					f := faultstore.New(max(c.seed, 1))
					fst := b.open(t, f)
					reg := prometheus.NewRegistry()
					m, err := NewMetrics(reg)
					if err != nil {
						t.Fatal(err)
					}
					ctx := context.Background()
					key := fmt.Sprintf("inc-1/ses-1/original/%08d.chunk", i)
					data := make([]byte, 64<<10)
					rand.Read(data)
					until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
					var failures int
					var leaked []string
					w := &Writer{Store: fst.st, PutTimeout: 300 * time.Millisecond, RetryFor: 20 * time.Second, Metrics: m,
						Backoff: pipeline.Backoff{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond},
						Failed: func(key string, err error) {
							failures++
							if c.visibleOK {
								return
							}
							if rc, gerr := fst.real.Get(ctx, key); gerr == nil {
								rc.Close()
								leaked = append(leaked, err.Error())
							} else if !errors.Is(gerr, storage.ErrNotFound) {
								t.Errorf("get after a failed put: %v", gerr)
							}
						}}
					c.set(f)
					if err := w.Put(ctx, key, data, until); err != nil {
						t.Fatalf("put: %v", err)
					}
					if len(leaked) > 0 {
						t.Fatalf("a failed put left a readable object: %v", leaked)
					}
					if hits := f.Hits(faultstore.Put) + f.Hits(faultstore.Write) + f.Hits(faultstore.Sync) + f.Hits(faultstore.Upload); hits == 0 || (failures == 0 && !c.below) {
						t.Fatalf("%d faults injected, %d reached the writer", hits, failures)
					}
					rc, err := fst.real.Get(ctx, key)
					if err != nil {
						t.Fatal(err)
					}
					got, _ := io.ReadAll(rc)
					rc.Close()
					if !bytes.Equal(got, data) {
						t.Fatalf("stored %d bytes, not the chunk's %d", len(got), len(data))
					}
					if n := fst.versions(t, key); n != 1 {
						t.Fatalf("%d objects (versions) under the key, want 1", n)
					}
					if err := fst.real.Delete(ctx, key); !errors.Is(err, storage.ErrRetained) {
						t.Fatalf("delete before the deadline: %v, want ErrRetained", err)
					}
					if r := value(t, m.retries); r != float64(failures) {
						t.Fatalf("retries metric %v, %d failed attempts", r, failures)
					}
					if value(t, m.waiting) != 0 || value(t, m.failures) != 0 {
						t.Fatalf("retrying %v, given up %v after success", value(t, m.waiting), value(t, m.failures))
					}
				})
			}
		})
	}
}

// value reads a counter's or gauge's value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestWriterGivesUpAfterRetryFor: a store that stays down costs a chunk
// RetryFor, not forever; the give-up is counted and the retrying gauge
// goes back to zero.
func TestWriterGivesUpAfterRetryFor(t *testing.T) {
	f := faultstore.New(1)
	fst := newFaultedFS(t, f)
	m, _ := NewMetrics(nil)
	release := f.Block(faultstore.Put)
	defer release()
	w := &Writer{Store: fst.st, PutTimeout: 50 * time.Millisecond, RetryFor: 300 * time.Millisecond, Metrics: m,
		Backoff: pipeline.Backoff{Base: 10 * time.Millisecond, Max: 40 * time.Millisecond}}
	t0 := time.Now()
	err := w.Put(context.Background(), "inc-1/k.chunk", []byte("x"), time.Now().Add(time.Hour))
	if err == nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("put on a hung store: %v after %v", err, time.Since(t0))
	}
	if value(t, m.failures) != 1 || value(t, m.retries) < 2 || value(t, m.waiting) != 0 {
		t.Fatalf("failures %v, retries %v, retrying %v", value(t, m.failures), value(t, m.retries), value(t, m.waiting))
	}
}
