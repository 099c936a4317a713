package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Direct is the reference `ferry send` is compared with: minio-go itself,
// used the way a program that has a file to store would use it.
//
// It is the one importer of minio-go outside storage/s3, on purpose: going
// through ferry's store would measure ferry's way of driving the SDK (one
// streamed request) instead of the SDK's own defaults for a file (parallel
// parts read with ReadAt), which is what a user would otherwise run. The
// bench also reads objects back through it, to check what ferry stored.
type s3Direct struct {
	c  *miniogo.Client
	tr *http.Transport
}

func newS3Direct(endpoint, accessKey, secretKey string) (*s3Direct, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("S3 endpoint %q: want a URL such as http://127.0.0.1:9000", endpoint)
	}
	secure := u.Scheme == "https"
	// minio-go's own default transport, kept at hand so that close can let
	// its idle connections go.
	tr, err := miniogo.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	c, err := miniogo.New(u.Host, &miniogo.Options{
		Creds:     credentials.NewStaticV4(accessKey, secretKey, ""),
		Secure:    secure,
		Transport: tr,
	})
	if err != nil {
		return nil, err
	}
	return &s3Direct{c: c, tr: tr}, nil
}

func (d *s3Direct) close() { d.tr.CloseIdleConnections() }

func (d *s3Direct) makeBucket(ctx context.Context, bucket string) error {
	ok, err := d.c.BucketExists(ctx, bucket)
	if err != nil || ok {
		return err
	}
	return d.c.MakeBucket(ctx, bucket, miniogo.MakeBucketOptions{})
}

// put stores the file at path under key as a user's program would: the open
// *os.File, its size, default options. The open is part of the work.
func (d *s3Direct) put(ctx context.Context, bucket, key, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := d.c.PutObject(ctx, bucket, key, f, size, miniogo.PutObjectOptions{})
	if err != nil {
		return fmt.Errorf("minio-go PutObject: %w", err)
	}
	if info.Size != size {
		return fmt.Errorf("minio-go PutObject stored %d bytes, not %d", info.Size, size)
	}
	return nil
}

// storedObject is what the bench found in MinIO after a run.
type storedObject struct {
	Key    string
	Size   int64
	SHA256 string
}

// only returns the one object under prefix: a run stores exactly one.
func (d *s3Direct) only(ctx context.Context, bucket, prefix string) (storedObject, error) {
	var found []miniogo.ObjectInfo
	for oi := range d.c.ListObjects(ctx, bucket, miniogo.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return storedObject{}, oi.Err
		}
		found = append(found, oi)
	}
	if len(found) != 1 {
		return storedObject{}, fmt.Errorf("%d objects under %s/%s, want 1", len(found), bucket, prefix)
	}
	return storedObject{Key: found[0].Key, Size: found[0].Size}, nil
}

// check reads key back and returns its size and SHA-256, from the bytes
// MinIO serves rather than from anything the writer said.
func (d *s3Direct) check(ctx context.Context, bucket, key string) (storedObject, error) {
	obj, err := d.c.GetObject(ctx, bucket, key, miniogo.GetObjectOptions{})
	if err != nil {
		return storedObject{}, err
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		return storedObject{}, fmt.Errorf("read back %s/%s: %w", bucket, key, err)
	}
	return storedObject{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// removeAll deletes every object under prefix, so that MinIO's disk holds
// the same amount of data at every run.
func (d *s3Direct) removeAll(ctx context.Context, bucket, prefix string) error {
	var errs []error
	for oi := range d.c.ListObjects(ctx, bucket, miniogo.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return oi.Err
		}
		if err := d.c.RemoveObject(ctx, bucket, oi.Key, miniogo.RemoveObjectOptions{}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
