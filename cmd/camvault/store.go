package main

import (
	"context"
	"flag"
	"os"
	"time"

	"camvault/datadir"
	"camvault/storage"
	"camvault/storage/fs"
	"camvault/storage/s3"
)

// storeFlags selects the chunk store. The S3 secret comes from the
// environment (CAMVAULT_S3_SECRET_KEY), never from the command line, where
// other users could read it.
type storeFlags struct {
	kind, endpoint, bucket, accessKey string
	secure, create                    bool
}

func addStoreFlags(fl *flag.FlagSet) *storeFlags {
	f := &storeFlags{}
	fl.StringVar(&f.kind, "store", "fs", "chunk store: fs (in the data directory) or s3 (Object Lock)")
	fl.StringVar(&f.endpoint, "s3-endpoint", "", "S3 endpoint host:port")
	fl.StringVar(&f.bucket, "s3-bucket", "camvault", "S3 bucket (with Object Lock)")
	fl.StringVar(&f.accessKey, "s3-access-key", "", "S3 access key (secret key in CAMVAULT_S3_SECRET_KEY)")
	fl.BoolVar(&f.secure, "s3-tls", false, "use HTTPS to the S3 endpoint")
	fl.BoolVar(&f.create, "s3-create-bucket", false, "create the bucket with Object Lock if missing")
	return f
}

// id describes the store the flags name for the catalog's comparison of
// the nodes' stores (server.Config.StoreID): "" for fs, which the server
// describes itself (host and path), the endpoint and bucket for s3.
func (f *storeFlags) id() string {
	if f.kind != "s3" {
		return ""
	}
	return "s3 bucket " + f.bucket + " at " + f.endpoint
}

// chunkStore is what the commands need of a store.
type chunkStore interface {
	storage.ChunkStore
}

// open opens the store the flags name for the data directory dir.
func (f *storeFlags) open(ctx context.Context, dir datadir.Layout, now func() time.Time) (chunkStore, func(), error) {
	switch f.kind {
	case "fs":
		st, err := fs.Open(dir.Chunks(), fs.WithClock(now))
		if err != nil {
			return nil, nil, err
		}
		return st, func() { st.Close() }, nil
	case "s3":
		if f.endpoint == "" || f.accessKey == "" || os.Getenv("CAMVAULT_S3_SECRET_KEY") == "" {
			return nil, nil, usagef("--store s3 needs --s3-endpoint, --s3-access-key and CAMVAULT_S3_SECRET_KEY")
		}
		st, err := s3.Open(ctx, s3.Config{Endpoint: f.endpoint, Bucket: f.bucket, AccessKey: f.accessKey,
			SecretKey: os.Getenv("CAMVAULT_S3_SECRET_KEY"), Secure: f.secure, Create: f.create})
		if err != nil {
			return nil, nil, err
		}
		return st, func() {}, nil
	default:
		return nil, nil, usagef("--store %q: fs or s3", f.kind)
	}
}
