package s3

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ferryhq/ferry/storage"
)

// listPage is how many parts or uploads one listing request asks for, S3's
// maximum.
const listPage = 1000

var (
	_ storage.Multipart        = (*multipart)(nil)
	_ storage.CRC32CPartPutter = (*multipart)(nil)
)

// multipart is a handle on an S3 multipart upload. Everything about it lives
// in S3, so it holds only names.
type multipart struct {
	s   *Store
	key string
	id  string
}

// NewMultipart starts an S3 multipart upload, created with meta.
func (s *Store) NewMultipart(ctx context.Context, key string, meta storage.Meta) (storage.Multipart, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	opts := putOptions(meta)
	// Every part then carries its CRC32C, which S3 checks against the bytes
	// it received. S3 wants the algorithm named here to accept part
	// checksums at all.
	opts.UserMetadata[amzChecksumAlgorithm] = minio.ChecksumCRC32C.String()
	id, err := s.api.NewMultipartUpload(ctx, s.bucket, key, opts)
	if err != nil {
		return nil, wrap("new multipart", key, err)
	}
	return &multipart{s: s, key: key, id: id}, nil
}

// ResumeMultipart checks with S3 that the upload exists, for key, and returns
// a handle on it.
func (s *Store) ResumeMultipart(ctx context.Context, key, uploadID string) (storage.Multipart, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	m := &multipart{s: s, key: key, id: uploadID}
	if uploadID == "" {
		return nil, m.notFound("resume")
	}
	// Listing one part answers NoSuchUpload for unknown ids and for ids of
	// another key.
	if _, err := s.api.ListObjectParts(ctx, s.bucket, key, uploadID, 0, 1); err != nil {
		return nil, m.wrap("resume", err)
	}
	return m, nil
}

// ListMultipart lists unfinished uploads under prefix, by key and then start
// time. It asks S3 for all uploads and filters them here: MinIO answers a
// prefix only with the uploads of the object of exactly that name.
func (s *Store) ListMultipart(ctx context.Context, prefix string, fn func(key, uploadID string, started time.Time) error) error {
	var uploads []minio.ObjectMultipartInfo
	keyMarker, idMarker := "", ""
	for {
		res, err := s.api.ListMultipartUploads(ctx, s.bucket, "", keyMarker, idMarker, "", listPage)
		if err != nil {
			return wrap("list multipart", prefix, err)
		}
		for _, u := range res.Uploads {
			if strings.HasPrefix(u.Key, prefix) {
				uploads = append(uploads, u)
			}
		}
		if !res.IsTruncated {
			break
		}
		if res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker {
			return fmt.Errorf("storage/s3: list multipart %q: truncated listing does not move on from %q", prefix, keyMarker)
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
	slices.SortFunc(uploads, func(a, b minio.ObjectMultipartInfo) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if c := a.Initiated.Compare(b.Initiated); c != 0 {
			return c
		}
		return strings.Compare(a.UploadID, b.UploadID)
	})
	for _, u := range uploads {
		if err := fn(u.Key, u.UploadID, u.Initiated.UTC()); err != nil {
			return err
		}
	}
	return nil
}

// ID returns S3's upload id.
func (m *multipart) ID() string { return m.id }

// PutPart uploads part n in one request of exactly size bytes. The body is
// streamed: memory use does not grow with size. A seekable r lets minio-go
// retry after a network error, and lets PutPart send the part's CRC32C
// (x-amz-checksum-crc32c, checked by the service) instead of signing the
// payload: over plain HTTP minio-go would otherwise sign every 64 KiB chunk
// with SHA-256 and the service verify each signature, which costs more CPU
// than the upload itself on a small machine. CRC32C rather than Content-MD5
// for the same reason: the CPU computes it at many GB/s, MD5 at about
// 500 MB/s.
func (m *multipart) PutPart(ctx context.Context, n int, r io.Reader, size int64) error {
	return m.putPart(ctx, n, r, size, nil)
}

// PutPartCRC32C is PutPart with the part's CRC32C given: the part is not
// read to compute it.
func (m *multipart) PutPartCRC32C(ctx context.Context, n int, r io.Reader, size int64, crc uint32) error {
	return m.putPart(ctx, n, r, size, &crc)
}

func (m *multipart) putPart(ctx context.Context, n int, r io.Reader, size int64, crc *uint32) error {
	if n < 1 || n > storage.MaxParts {
		return fmt.Errorf("storage/s3: put part %d of %q: part number out of range 1-%d", n, m.key, storage.MaxParts)
	}
	if size < 0 {
		return fmt.Errorf("storage/s3: put part %d of %q: size %d: the size must be known", n, m.key, size)
	}
	opts := minio.PutObjectPartOptions{DisableContentSha256: true}
	if crc != nil {
		opts.CustomHeader = http.Header{}
		opts.CustomHeader.Set(minio.ChecksumCRC32C.Key(), base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, *crc)))
	} else if rs, ok := r.(io.ReadSeeker); ok {
		sum, err := crc32cOf(rs, size)
		if err != nil {
			return fmt.Errorf("storage/s3: put part %d of %q: %w", n, m.key, err)
		}
		opts.CustomHeader = http.Header{}
		opts.CustomHeader.Set(minio.ChecksumCRC32C.Key(), sum)
	} else {
		// A stream is read once: its checksum follows the body, as a
		// trailer, computed while it is sent. The placeholder has the
		// checksum's length, which the request's length counts.
		opts.Trailer = http.Header{}
		opts.Trailer.Set(minio.ChecksumCRC32C.Key(), "AAAAAA==")
		r = &trailingCRC{r: r, left: size, crc: minio.ChecksumCRC32C.Hasher(), trailer: opts.Trailer}
	}
	b := body(r, size)
	_, err := m.s.api.PutObjectPart(ctx, m.s.bucket, m.key, m.id, n, b, size, opts)
	done(b)
	return m.wrap(fmt.Sprintf("put part %d", n), err)
}

// Parts lists the parts S3 holds, following its pagination.
func (m *multipart) Parts(ctx context.Context) ([]storage.Part, error) {
	parts, err := m.objectParts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]storage.Part, len(parts))
	for i, p := range parts {
		out[i] = storage.Part{Number: p.PartNumber, Size: p.Size}
	}
	return out, nil
}

func (m *multipart) objectParts(ctx context.Context) ([]minio.ObjectPart, error) {
	var parts []minio.ObjectPart
	marker := 0
	for {
		res, err := m.s.api.ListObjectParts(ctx, m.s.bucket, m.key, m.id, marker, listPage)
		if err != nil {
			return nil, m.wrap("parts", err)
		}
		parts = append(parts, res.ObjectParts...)
		if !res.IsTruncated {
			break
		}
		if res.NextPartNumberMarker <= marker {
			return nil, fmt.Errorf("storage/s3: parts of %q: truncated listing does not move on from part %d", m.key, marker)
		}
		marker = res.NextPartNumberMarker
	}
	slices.SortFunc(parts, func(a, b minio.ObjectPart) int { return a.PartNumber - b.PartNumber })
	return parts, nil
}

// Complete asks S3 to join the parts, then makes the object's metadata meta.
func (m *multipart) Complete(ctx context.Context, meta storage.Meta) (storage.Info, error) {
	parts, err := m.objectParts(ctx)
	if err != nil {
		return storage.Info{}, err
	}
	if len(parts) == 0 {
		return m.completeEmpty(ctx, meta)
	}
	// S3 would refuse too, but after a round trip and with a message that
	// differs between services.
	sizes := make([]storage.Part, len(parts))
	for i, p := range parts {
		sizes[i] = storage.Part{Number: p.PartNumber, Size: p.Size}
	}
	if err := storage.CheckPartSizes(sizes); err != nil {
		return storage.Info{}, fmt.Errorf("storage/s3: complete %q: %w", m.key, err)
	}
	complete := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		complete[i] = minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32C: p.ChecksumCRC32C}
	}
	if _, err := m.s.api.CompleteMultipartUpload(ctx, m.s.bucket, m.key, m.id, complete, minio.PutObjectOptions{}); err != nil {
		return storage.Info{}, m.wrap("complete", err)
	}
	// From here the upload is gone: errors are about the object.
	oi, err := m.s.api.StatObject(ctx, m.s.bucket, m.key, minio.StatObjectOptions{})
	if err != nil {
		return storage.Info{}, wrap("complete: stat", m.key, err)
	}
	info := toInfo(m.key, oi)
	if sameMeta(info.Meta, meta) {
		return info, nil
	}
	// If-Match: should another writer replace the object meanwhile, its
	// object is left alone rather than given this one's metadata.
	_, err = m.s.api.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: m.s.bucket, Object: m.key, ReplaceMetadata: true, ContentType: contentType(meta), UserMetadata: userHeaders(meta.User)},
		minio.CopySrcOptions{Bucket: m.s.bucket, Object: m.key, MatchETag: oi.ETag})
	if err != nil {
		return storage.Info{}, wrap("complete: replace metadata", m.key, err)
	}
	return m.s.Stat(ctx, m.key)
}

// completeEmpty stores an empty object, since S3 refuses to complete an
// upload without parts, then ends the upload. In that order: a failed Abort
// leaves an upload ListMultipart can find, a failed Put leaves the upload
// as it was.
func (m *multipart) completeEmpty(ctx context.Context, meta storage.Meta) (storage.Info, error) {
	if err := m.s.Put(ctx, m.key, strings.NewReader(""), 0, meta); err != nil {
		return storage.Info{}, err
	}
	if err := m.Abort(ctx); err != nil {
		m.s.log.Warn("storage/s3: empty upload stored but not aborted", "key", m.key, "upload", m.id, "err", err)
	}
	return m.s.Stat(ctx, m.key)
}

// Abort ends the upload; S3 frees its parts. An upload that is already gone
// is not an error: AWS says NoSuchUpload, MinIO says nothing, and either way
// there is nothing left to discard.
func (m *multipart) Abort(ctx context.Context) error {
	err := m.wrap("abort", m.s.api.AbortMultipartUpload(ctx, m.s.bucket, m.key, m.id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

func (m *multipart) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return wrap(fmt.Sprintf("%s (upload %s)", op, m.id), m.key, err)
}

func (m *multipart) notFound(op string) error {
	return fmt.Errorf("storage/s3: %s %q (upload %s): %w", op, m.key, m.id, storage.ErrNotFound)
}

// amzChecksumAlgorithm names, when a multipart upload starts, the checksum
// its parts carry (minio-go does not export its name for it).
const amzChecksumAlgorithm = "X-Amz-Checksum-Algorithm"

// crc32cOf returns the base64 CRC32C of the next size bytes of rs, as S3's
// checksum headers carry it, and seeks back.
func crc32cOf(rs io.ReadSeeker, size int64) (string, error) {
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", err
	}
	h := minio.ChecksumCRC32C.Hasher()
	// A reader holding exactly the part (ferry's part buffers come as a
	// bytes.Reader) hands its bytes to the hash as they are; io.CopyN
	// would copy them all through a buffer first.
	if held, ok := rs.(heldBytes); ok && int64(held.Len()) == size {
		_, err = held.WriteTo(h)
	} else {
		_, err = io.CopyN(h, rs, size)
	}
	if err != nil {
		return "", err
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// heldBytes is a reader of bytes in memory, such as bytes.Reader: Len is
// what is left to read.
type heldBytes interface {
	io.WriterTo
	Len() int
}

// trailingCRC reads the next left bytes of r, computing their CRC32C, and
// puts it in trailer as soon as the last one is read: the request's body
// may not be read past its length.
type trailingCRC struct {
	r       io.Reader
	left    int64
	crc     hash.Hash
	trailer http.Header
}

func (t *trailingCRC) Read(p []byte) (int, error) {
	if t.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > t.left {
		p = p[:t.left]
	}
	n, err := t.r.Read(p)
	t.crc.Write(p[:n])
	t.left -= int64(n)
	if t.left == 0 {
		t.trailer.Set(minio.ChecksumCRC32C.Key(), base64.StdEncoding.EncodeToString(t.crc.Sum(nil)))
	}
	return n, err
}
