package s3

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/ferryhq/ferry/storage"
)

// fakeAPI stands in for S3. Calls without a function set panic through the
// nil embedded interface: a test states every call it expects.
type fakeAPI struct {
	s3API
	putObjectPart   func(data io.Reader, size int64) error
	listObjectParts func(uploadID string) (minio.ListObjectPartsResult, error)
	complete        func(parts []minio.CompletePart) error
	statObject      func() (minio.ObjectInfo, error)
	copyObject      func(dst minio.CopyDestOptions, src minio.CopySrcOptions) error
	abort           func() error
}

func (f *fakeAPI) PutObjectPart(_ context.Context, _, _, _ string, _ int, data io.Reader, size int64, _ minio.PutObjectPartOptions) (minio.ObjectPart, error) {
	return minio.ObjectPart{}, f.putObjectPart(data, size)
}

func (f *fakeAPI) ListObjectParts(_ context.Context, _, _, uploadID string, _, _ int) (minio.ListObjectPartsResult, error) {
	return f.listObjectParts(uploadID)
}

func (f *fakeAPI) CompleteMultipartUpload(_ context.Context, _, _, _ string, parts []minio.CompletePart, _ minio.PutObjectOptions) (minio.UploadInfo, error) {
	return minio.UploadInfo{}, f.complete(parts)
}

func (f *fakeAPI) StatObject(context.Context, string, string, minio.StatObjectOptions) (minio.ObjectInfo, error) {
	return f.statObject()
}

func (f *fakeAPI) CopyObject(_ context.Context, dst minio.CopyDestOptions, src minio.CopySrcOptions) (minio.UploadInfo, error) {
	return minio.UploadInfo{}, f.copyObject(dst, src)
}

func (f *fakeAPI) AbortMultipartUpload(context.Context, string, string, string) error {
	return f.abort()
}

// closeRecorder is a caller's reader that must stay open: ferry may go on
// reading the same connection after a part.
type closeRecorder struct {
	io.ReadSeeker
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestPutPartBody(t *testing.T) {
	var got string
	var seekable bool
	api := &fakeAPI{putObjectPart: func(data io.Reader, size int64) error {
		if size != 5 {
			t.Errorf("PutObjectPart size = %d, want 5", size)
		}
		if c, ok := data.(io.Closer); ok {
			c.Close() // as minio-go does
		}
		_, seekable = data.(io.Seeker)
		b, err := io.ReadAll(data)
		got = string(b)
		return err
	}}
	m := &multipart{s: newWithAPI(api, "b", nil), key: "k", id: "u"}
	r := &closeRecorder{ReadSeeker: strings.NewReader("XXhello, and more")}
	r.Seek(2, io.SeekStart)
	if err := m.PutPart(context.Background(), 1, r, 5); err != nil {
		t.Fatal(err)
	}
	if got != "hello" {
		t.Errorf("part body = %q, want the 5 bytes from the reader's offset", got)
	}
	if !seekable {
		t.Error("a seekable reader reached minio-go unseekable: no retries")
	}
	if r.closed {
		t.Error("the caller's reader was closed")
	}
	// Unknown sizes never reach minio-go, which would buffer for them.
	if err := m.PutPart(context.Background(), 1, r, -1); err == nil {
		t.Error("PutPart with size -1 succeeded")
	}
	if err := newWithAPI(api, "b", nil).Put(context.Background(), "k", r, -1, storage.Meta{}); err == nil {
		t.Error("Put with size -1 succeeded")
	}
}

func TestSectionSeekerRetry(t *testing.T) {
	r := strings.NewReader("0123456789")
	r.Seek(3, io.SeekStart)
	b := body(r, 4)
	first, _ := io.ReadAll(b)
	// minio-go seeks to 0 before each retry: that must mean the part's start.
	if _, err := b.(io.Seeker).Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	second, _ := io.ReadAll(b)
	if string(first) != "3456" || string(second) != "3456" {
		t.Errorf("reads = %q then %q, want %q twice", first, second, "3456")
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		code     string
		status   int
		notFound bool
		full     bool
	}{
		{"NoSuchKey", 404, true, false},
		{"NoSuchUpload", 404, true, false},
		{"NoSuchBucket", 404, false, false},
		{"AccessDenied", 403, false, false},
		{"EntityTooSmall", 400, false, false},
		{"XMinioStorageFull", 507, false, true},
		{"XMinioAdminBucketQuotaExceeded", 400, false, true},
		{"QuotaExceeded", 403, false, true},
		{"AnotherServicesWord", 507, false, true},
		// One object too big for the service, not a service out of room.
		{"EntityTooLarge", 400, false, false},
	}
	for _, tc := range tests {
		cause := minio.ErrorResponse{Code: tc.code, StatusCode: tc.status, Message: "from S3"}
		err := wrap("stat", "k", cause)
		if errors.Is(err, storage.ErrNotFound) != tc.notFound {
			t.Errorf("%s: errors.Is(ErrNotFound) = %v, want %v", tc.code, !tc.notFound, tc.notFound)
		}
		if errors.Is(err, storage.ErrFull) != tc.full {
			t.Errorf("%s: errors.Is(ErrFull) = %v, want %v", tc.code, !tc.full, tc.full)
		}
		var er minio.ErrorResponse
		if !errors.As(err, &er) || er.Code != tc.code {
			t.Errorf("%s: the minio error is no longer reachable in %v", tc.code, err)
		}
		if !strings.Contains(err.Error(), `stat "k"`) || !strings.Contains(err.Error(), "from S3") {
			t.Errorf("%s: %q lacks the operation, the key or the service's message", tc.code, err)
		}
	}
	if wrap("x", "k", nil) != nil {
		t.Error("wrap(nil) != nil")
	}
}

// A service out of room fails the upload's calls with storage.ErrFull.
func TestFullServiceFailsUpload(t *testing.T) {
	full := minio.ErrorResponse{Code: "XMinioStorageFull", StatusCode: 507, Message: "Storage backend has reached its minimum free drive threshold."}
	api := &fakeAPI{
		putObjectPart: func(data io.Reader, _ int64) error {
			_, err := io.Copy(io.Discard, data)
			if err != nil {
				return err
			}
			return full
		},
		listObjectParts: func(string) (minio.ListObjectPartsResult, error) {
			return minio.ListObjectPartsResult{ObjectParts: []minio.ObjectPart{{PartNumber: 1, Size: 5, ETag: "p1"}}}, nil
		},
		complete: func([]minio.CompletePart) error { return full },
	}
	m := &multipart{s: newWithAPI(api, "b", nil), key: "k", id: "u"}
	ctx := context.Background()
	err := m.PutPart(ctx, 1, strings.NewReader("hello"), 5)
	if !errors.Is(err, storage.ErrFull) || !strings.Contains(err.Error(), "free drive threshold") {
		t.Errorf("PutPart on a full service = %v, want storage.ErrFull with the service's words", err)
	}
	if _, err := m.Complete(ctx, storage.Meta{}); !errors.Is(err, storage.ErrFull) {
		t.Errorf("Complete on a full service = %v, want storage.ErrFull", err)
	}
}

func TestCompleteReplacesMetaOnlyWhenChanged(t *testing.T) {
	stored := minio.ObjectInfo{
		Key: "k", Size: 10, ETag: "etag-1", ContentType: "application/octet-stream",
		UserMetadata: map[string]string{"Uploader": "u_1"},
	}
	tests := []struct {
		name     string
		meta     storage.Meta
		wantCopy bool
	}{
		{"same", storage.Meta{User: map[string]string{"uploader": "u_1"}}, false},
		{"new key", storage.Meta{User: map[string]string{"uploader": "u_1", "sha256": "ab"}}, true},
		{"key dropped", storage.Meta{}, true},
		{"new type", storage.Meta{ContentType: "image/png", User: map[string]string{"uploader": "u_1"}}, true},
	}
	for _, tc := range tests {
		var copied *minio.CopyDestOptions
		var src minio.CopySrcOptions
		api := &fakeAPI{
			listObjectParts: func(string) (minio.ListObjectPartsResult, error) {
				return minio.ListObjectPartsResult{ObjectParts: []minio.ObjectPart{{PartNumber: 1, Size: 10, ETag: "p1"}}}, nil
			},
			complete: func(parts []minio.CompletePart) error {
				if len(parts) != 1 || parts[0].ETag != "p1" {
					t.Errorf("%s: completed with %+v", tc.name, parts)
				}
				return nil
			},
			statObject: func() (minio.ObjectInfo, error) { return stored, nil },
			copyObject: func(dst minio.CopyDestOptions, s minio.CopySrcOptions) error {
				copied, src = &dst, s
				return nil
			},
		}
		m := &multipart{s: newWithAPI(api, "b", nil), key: "k", id: "u"}
		if _, err := m.Complete(context.Background(), tc.meta); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (copied != nil) != tc.wantCopy {
			t.Errorf("%s: copied = %v, want %v", tc.name, copied != nil, tc.wantCopy)
		}
		if copied == nil {
			continue
		}
		if !copied.ReplaceMetadata || copied.Object != "k" || src.Object != "k" || src.MatchETag != "etag-1" {
			t.Errorf("%s: copy %+v from %+v, want k onto itself, replacing metadata, if it is still etag-1", tc.name, copied, src)
		}
		if copied.ContentType != contentType(tc.meta) || len(copied.UserMetadata) != len(tc.meta.User) {
			t.Errorf("%s: copy sets %q %v, want %+v", tc.name, copied.ContentType, copied.UserMetadata, tc.meta)
		}
		for k, v := range tc.meta.User {
			if copied.UserMetadata["X-Amz-Meta-"+k] != v {
				t.Errorf("%s: copy metadata %v lacks X-Amz-Meta-%s=%s", tc.name, copied.UserMetadata, k, v)
			}
		}
	}
}

func TestAbortGoneIsNotAnError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		fail bool
	}{
		{nil, false},
		{minio.ErrorResponse{Code: "NoSuchUpload"}, false},
		{minio.ErrorResponse{Code: "AccessDenied"}, true},
	} {
		api := &fakeAPI{abort: func() error { return tc.err }}
		m := &multipart{s: newWithAPI(api, "b", nil), key: "k", id: "u"}
		if err := m.Abort(context.Background()); (err != nil) != tc.fail {
			t.Errorf("Abort when S3 says %v = %v", tc.err, err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Endpoint: "http://127.0.0.1:9000"},
		{Endpoint: "127.0.0.1:9000", Bucket: "b"},
		{Endpoint: "ftp://127.0.0.1:9000", Bucket: "b"},
		{Endpoint: "http://127.0.0.1:9000/path", Bucket: "b"},
		{Endpoint: "http://", Bucket: "b"},
		{Endpoint: "http://127.0.0.1:9000", PublicEndpoint: "files.example.com", Bucket: "b"},
	} {
		if s, err := New(context.Background(), cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
