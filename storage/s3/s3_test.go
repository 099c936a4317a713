package s3_test

import (
	"bytes"
	"context"
	"hash/crc32"
	"io"
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

// flipping returns its bytes faithfully the first time through and with
// one byte changed after that: the part's checksum is computed from the
// first pass, the request body is the second.
type flipping struct {
	*bytes.Reader
	passes int
	data   []byte
}

func (f *flipping) Seek(off int64, whence int) (int64, error) {
	f.passes++
	if f.passes == 2 { // the seek back after checksumming
		bad := bytes.Clone(f.data)
		bad[len(bad)/2] ^= 0xff
		f.Reader = bytes.NewReader(bad)
	}
	return f.Reader.Seek(off, whence)
}

// S3 checks every part against the CRC32C sent with it: bytes changed on the
// way are refused, and the upload goes on with the right ones.
func TestCorruptedPartRefused(t *testing.T) {
	s := newStore(t, "checksums")
	ctx := context.Background()
	data := bytes.Repeat([]byte("ferry "), storage.MinPartSize/6+1)
	mp, err := s.NewMultipart(ctx, "rooms/r/corrupt.bin", storage.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Abort(ctx)
	err = mp.PutPart(ctx, 1, &flipping{Reader: bytes.NewReader(data), data: data}, int64(len(data)))
	if err == nil {
		t.Fatal("a part whose bytes changed after its checksum was stored")
	}
	if parts, err := mp.Parts(ctx); err != nil || len(parts) != 0 {
		t.Fatalf("parts after the refused one: %v, %v", parts, err)
	}
	if err := mp.PutPart(ctx, 1, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("the same part, intact: %v", err)
	}
	// A reader holding more than the part: the checksum covers the part.
	if err := mp.PutPart(ctx, 2, bytes.NewReader([]byte("end, and more")), 3); err != nil {
		t.Fatal(err)
	}
	info, err := mp.Complete(ctx, storage.Meta{})
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	if info.Size != int64(len(data))+3 {
		t.Fatalf("size %d, want %d", info.Size, len(data)+3)
	}
	obj, err := s.Get(ctx, "rooms/r/corrupt.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, append(bytes.Clone(data), "end"...)) {
		t.Fatalf("object differs from what was sent (%d bytes, %v)", len(got), err)
	}
}

// A part whose CRC32C the caller gives is checked by S3 against it: a wrong
// one is refused, the right one stores the part.
func TestGivenPartChecksumChecked(t *testing.T) {
	s := newStore(t, "checksums")
	ctx := context.Background()
	data := bytes.Repeat([]byte("ferry "), storage.MinPartSize/6+1)
	mp, err := s.NewMultipart(ctx, "rooms/r/given.bin", storage.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Abort(ctx)
	cp, ok := mp.(storage.CRC32CPartPutter)
	if !ok {
		t.Fatal("an S3 multipart does not take its parts' CRC32C")
	}
	crc := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	if err := cp.PutPartCRC32C(ctx, 1, bytes.NewReader(data), int64(len(data)), crc+1); err == nil {
		t.Fatal("a part stored with a CRC32C that is not its bytes'")
	}
	if err := cp.PutPartCRC32C(ctx, 1, bytes.NewReader(data), int64(len(data)), crc); err != nil {
		t.Fatalf("the part with its CRC32C: %v", err)
	}
	if parts, err := mp.Parts(ctx); err != nil || len(parts) != 1 || parts[0].Size != int64(len(data)) {
		t.Fatalf("parts: %v, %v", parts, err)
	}
}
