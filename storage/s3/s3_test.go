package s3_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/s3"
	"github.com/ferryhq/ferry/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.Shared(m))
}

// newStore connects to the MinIO shared by this package's tests.
func newStore(t *testing.T, bucket string, change ...func(*s3.Config)) *s3.Store {
	t.Helper()
	endpoint, access, secret := testenv.MinIO(t)
	cfg := s3.Config{Endpoint: endpoint, Bucket: bucket, AccessKey: access, SecretKey: secret}
	for _, c := range change {
		c(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatalf("s3.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testenv.MinIO(t) // skip once here rather than in every subtest
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, "conformance") })
}

func TestNewCreatesBucket(t *testing.T) {
	// Twice: the second New finds the bucket the first created.
	for range 2 {
		s := newStore(t, "created-by-new")
		if err := s.Put(context.Background(), "k", strings.NewReader("v"), 1, storage.Meta{}); err != nil {
			t.Fatalf("Put into the new bucket: %v", err)
		}
	}
}

func TestNewFailsOnBadCredentials(t *testing.T) {
	endpoint, access, _ := testenv.MinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.New(ctx, s3.Config{Endpoint: endpoint, Bucket: "any", AccessKey: access, SecretKey: "wrong-secret"})
	if err == nil {
		s.Close()
		t.Fatal("New with a wrong secret succeeded")
	}
}

func TestPresignUsesPublicEndpoint(t *testing.T) {
	s := newStore(t, "presign", func(c *s3.Config) { c.PublicEndpoint = "https://files.example.com" })
	raw, err := s.PresignGet(context.Background(), "room/cat.jpg", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" || u.Host != "files.example.com" || !strings.HasSuffix(u.Path, "/presign/room/cat.jpg") || u.Query().Get("X-Amz-Signature") == "" {
		t.Errorf("PresignGet = %s, want a signed https://files.example.com/presign/room/cat.jpg", raw)
	}
}
