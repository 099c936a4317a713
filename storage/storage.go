// Package storage defines where ferry keeps files: a small interface that the
// transfer and download code consume, implemented by storage/disk (the default,
// a local folder) and storage/s3 (MinIO, AWS S3 and other S3-compatible
// services). Both are checked by the same conformance suite, storage/storagetest.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// MinPartSize is the smallest size of every part of a multipart upload but the
// last, as S3 requires.
const MinPartSize = 5 << 20

// CheckPartSizes applies S3's rule to the parts of an upload about to be
// completed (in order): all but the last are at least MinPartSize.
func CheckPartSizes(parts []Part) error {
	for i, p := range parts {
		if i < len(parts)-1 && p.Size < MinPartSize {
			return fmt.Errorf("part %d is %d bytes, less than the %d required of all parts but the last", p.Number, p.Size, MinPartSize)
		}
	}
	return nil
}

// MaxParts is the largest part number a multipart upload may use.
const MaxParts = 10000

// Sentinel errors. Implementations wrap them with %w so that callers can use
// errors.Is.
var (
	// ErrNotFound: the object, or the multipart upload, does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrInvalidKey: the key is empty, absolute, or has "." / ".." elements,
	// backslashes or control characters.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrFull: the store has no room for what was written (a full disk,
	// an exhausted quota or bucket limit). Trying again does not help
	// until an operator frees space.
	ErrFull = errors.New("storage: full")
)

// Meta describes an object: its content type (stored as
// application/octet-stream when empty) and user metadata (for ferry:
// uploader, room, original name, SHA-256). Keys of User are lower-case ASCII
// words with dashes; values are printable ASCII (callers escape anything else).
type Meta struct {
	ContentType string
	User        map[string]string
}

// Info is what a store knows about an object.
type Info struct {
	Key      string
	Size     int64
	Modified time.Time
	Meta     Meta
}

// Part is one stored part of a multipart upload.
type Part struct {
	Number int
	Size   int64
}

// Store is the storage ferry needs. Keys are slash-separated paths such as
// "rooms/lobby/2026/11/25/f_abc/cat.jpg"; implementations reject keys that
// could escape their root (ErrInvalidKey).
type Store interface {
	// Put stores a whole object whose size is known in advance. It is meant for
	// small objects (records, manifests); files go through multipart uploads.
	Put(ctx context.Context, key string, r io.Reader, size int64, meta Meta) error
	// Get opens an object for reading; the Object seeks, so it can serve HTTP
	// Range requests without reading what it skips.
	Get(ctx context.Context, key string) (Object, error)
	// Stat returns an object's Info, or ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes an object. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in key
	// order, until fn returns an error (which List returns). Info.Meta is
	// left empty (S3 listings carry no metadata): use Stat for it.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// NewMultipart starts an upload to key that is assembled from parts.
	// meta is what the object is created with.
	NewMultipart(ctx context.Context, key string, meta Meta) (Multipart, error)
	// ResumeMultipart reopens a multipart upload started earlier, possibly by
	// another process, from the key and Multipart.ID. ErrNotFound when it was
	// completed, aborted or never existed.
	ResumeMultipart(ctx context.Context, key, uploadID string) (Multipart, error)
}

// Multipart is an object being assembled from numbered parts.
type Multipart interface {
	// ID identifies the upload for ResumeMultipart.
	ID() string
	// PutPart stores part n (1 to MaxParts) of exactly size bytes read from r.
	// Storing a part number again replaces it. Every part but the last must
	// be at least MinPartSize when completing.
	PutPart(ctx context.Context, n int, r io.Reader, size int64) error
	// Parts lists the parts stored so far, ordered by number.
	Parts(ctx context.Context) ([]Part, error)
	// Complete joins the parts, in number order, into the object and ends the
	// upload; with no parts the object is empty. meta replaces the metadata
	// the upload was created with (ferry only learns a file's SHA-256 once
	// the last byte is in). A part under MinPartSize other than the last is
	// refused and the upload stays usable.
	Complete(ctx context.Context, meta Meta) (Info, error)
	// Abort discards the parts and ends the upload. Aborting an upload that
	// is already gone is not an error.
	Abort(ctx context.Context) error
}

// CRC32CPartPutter is an optional capability of a Multipart: it takes a
// part's CRC32C (Castagnoli) from the caller, who computed it as the bytes
// arrived, instead of reading the part once more to compute it. The service
// checks the part against it as it would against its own.
type CRC32CPartPutter interface {
	PutPartCRC32C(ctx context.Context, n int, r io.Reader, size int64, crc uint32) error
}

// Object is an opened object.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Presigner is an optional capability: a store that can hand out a time-limited
// URL to read an object directly from the storage service.
type Presigner interface {
	PresignGet(ctx context.Context, key string, expires time.Duration) (string, error)
}

// MultipartLister is an optional capability: a store that can list multipart
// uploads that were started but never completed or aborted, so that abandoned
// ones can be cleaned up even when ferry lost its own record of them.
type MultipartLister interface {
	ListMultipart(ctx context.Context, prefix string, fn func(key, uploadID string, started time.Time) error) error
}

// SpaceReporter is an optional capability: a store that knows how many bytes
// it can still take, so that an upload that cannot fit is refused before
// its first byte is sent. S3 services do not say; a local disk does.
type SpaceReporter interface {
	// Free returns the bytes that can still be written.
	Free(ctx context.Context) (int64, error)
}
