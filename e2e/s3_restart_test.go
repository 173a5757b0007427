package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"camvault/format/manifest"
	"camvault/internal/s3test"
)

// scrape returns the value of a metric series (its full name with labels,
// as /metrics prints it), 0 if absent.
func scrape(t *testing.T, s *server, series string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestS3RestartMidStream: the S3 server dies 5 s into a 20 s stream and
// comes back on the same port and data 5 s later. The camera is never cut
// off; the puts that failed meanwhile are retried with backoff (the
// metrics show it) until the server is back; then every chunk is in the
// bucket exactly once (one version) under COMPLIANCE retention until its
// catalog deadline, the catalog's rows are the bucket's objects, the
// manifest has every seq with no gap, the session ended normally, and the
// export has every frame and verifies.
func TestS3RestartMidStream(t *testing.T) {
	g := s3test.StartPrivate(t)
	c := testClip(t, 20)
	s, secrets, bucket, s3flags := newS3Server(t, g, "cam1")
	data := s.data

	cam := newRTSPCamera(t, c, false)
	done := make(chan error, 1)
	go func() { done <- cam.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP) }()
	time.Sleep(5 * time.Second)
	g.Kill()
	down := time.Now()
	time.Sleep(5 * time.Second)
	// Mid-outage: chunks are being retried, none given up.
	retrying := scrape(t, s, "camvault_store_put_retrying")
	retries := scrape(t, s, "camvault_store_put_retries_total")
	if err := g.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("S3 down for %v; at its restart %v chunks retrying, %v retries", time.Since(down).Round(time.Millisecond), retrying, retries)
	if retrying == 0 || retries == 0 {
		t.Errorf("the outage does not show in the metrics: %v retrying, %v retries", retrying, retries)
	}
	if err := <-done; err != nil {
		t.Fatalf("the camera was cut off: %v\n%s", err, tail(s.logs(), 40))
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.Status != "closed" {
		t.Errorf("incident %s", inc.Status)
	}
	if v := scrape(t, s, "camvault_store_put_failures_total"); v != 0 {
		t.Errorf("%v chunks given up", v)
	}
	if v := scrape(t, s, "camvault_segments_dropped_total"); v != 0 {
		t.Errorf("%v segments dropped", v)
	}

	// The manifest: every seq of the session, in order, no gap.
	var seqs []uint64
	for _, rec := range manifestRecords(t, data, inc.ID) {
		switch rec.Kind {
		case manifest.KindGap:
			t.Errorf("gap in the manifest: %+v", rec)
		case manifest.KindChunk:
			seqs = append(seqs, rec.Seq)
		}
	}
	for i, seq := range seqs {
		if seq != uint64(i) {
			t.Fatalf("manifest seqs %v", seqs)
		}
	}
	if len(seqs) < 10 { // init + ~10 segments of 2 s
		t.Fatalf("%d chunks for a 20 s stream", len(seqs))
	}

	// The bucket: the catalog's objects, each once, each locked until its deadline.
	rows, _, _, _ := storeState(t, data)
	deadlines := chunkDeadlines(t, data)
	raw, err := minio.New(g.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3test.AccessKey, s3test.SecretKey, ""),
		Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	versions := map[string]int{}
	for o := range raw.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: inc.ID + "/", WithVersions: true, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if strings.HasSuffix(o.Key, ".chunk") && !o.IsDeleteMarker {
			versions[o.Key]++
		}
	}
	var keys []string
	for k, n := range versions {
		if n != 1 {
			t.Errorf("%s: %d versions", k, n)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, rows) || len(rows) != len(seqs) {
		t.Fatalf("bucket %v\ncatalog %v", keys, rows)
	}
	for _, k := range keys {
		info, err := raw.StatObject(ctx, bucket, k, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		until, _ := time.Parse(time.RFC3339, info.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"))
		if info.Metadata.Get("X-Amz-Object-Lock-Mode") != "COMPLIANCE" || !until.Equal(deadlines[k].Truncate(time.Second)) {
			t.Fatalf("%s: lock %q until %v, catalog deadline %v", k, info.Metadata.Get("X-Amz-Object-Lock-Mode"), until, deadlines[k])
		}
	}

	out := filepath.Join(t.TempDir(), "export")
	mustCamvault(t, append([]string{"export", inc.ID, "--identity", identityPath(data), "--out", out, "--data", data}, s3flags...)...)
	if n := len(framemd5(t, filepath.Join(out, "incident.mp4"))); n != c.Frames {
		t.Fatalf("export: %d frames, the camera sent %d", n, c.Frames)
	}
	mustCamvault(t, append([]string{"verify", inc.ID, "--identity", identityPath(data), "--data", data}, s3flags...)...)
}

// chunkDeadlines reads each live chunk's deadline from the catalog.
func chunkDeadlines(t *testing.T, data string) map[string]time.Time {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "catalog.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.Query(`SELECT object, retain_until FROM chunks WHERE deleted_at IS NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]time.Time{}
	for r.Next() {
		var k, until string
		if err := r.Scan(&k, &until); err != nil {
			t.Fatal(err)
		}
		if out[k], err = time.Parse(time.RFC3339Nano, until); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
