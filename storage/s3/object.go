package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/ferryhq/ferry/storage"
)

// object reads an S3 object as a stream that seeks. It keeps one response body
// open at a time; a Seek that moves closes it, and the next Read asks for the
// rest of the object from the new offset. Serving an HTTP Range request is
// thus one Seek and one GET, and nothing skipped is downloaded.
type object struct {
	ctx  context.Context
	s    *Store
	key  string
	etag string
	info storage.Info
	body io.ReadCloser // open at off, or nil
	off  int64
}

var _ storage.Object = (*object)(nil)

// Info returns the object's Info as of Get.
func (o *object) Info() storage.Info { return o.info }

// Read reads from the current offset.
func (o *object) Read(p []byte) (int, error) {
	if o.off >= o.info.Size {
		return 0, io.EOF
	}
	if o.body == nil {
		var opts minio.GetObjectOptions
		// If-Match: bytes from a newer object of the same key would be
		// spliced into the old one's.
		if err := opts.SetMatchETag(o.etag); err != nil {
			return 0, fmt.Errorf("storage/s3: get %q: %w", o.key, err)
		}
		// SetRange(0, 0) would ask for one byte; offset 0 needs no range.
		if o.off > 0 {
			if err := opts.SetRange(o.off, 0); err != nil {
				return 0, fmt.Errorf("storage/s3: get %q: %w", o.key, err)
			}
		}
		rc, _, _, err := o.s.api.GetObject(o.ctx, o.s.bucket, o.key, opts)
		if err != nil {
			return 0, wrap("get", o.key, err)
		}
		o.body = rc
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	if err == io.EOF && o.off < o.info.Size {
		err = fmt.Errorf("storage/s3: get %q: body ended at %d of %d bytes: %w", o.key, o.off, o.info.Size, io.ErrUnexpectedEOF)
	}
	return n, err
}

// Seek moves the offset; the request for the new position waits for Read.
func (o *object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.off
	case io.SeekEnd:
		offset += o.info.Size
	default:
		return 0, fmt.Errorf("storage/s3: seek %q: bad whence %d", o.key, whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("storage/s3: seek %q: negative position %d", o.key, offset)
	}
	if offset != o.off {
		o.closeBody()
		o.off = offset
	}
	return offset, nil
}

// Close ends the open response, if any.
func (o *object) Close() error {
	o.closeBody()
	return nil
}

func (o *object) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

// body adapts a caller's reader for minio-go. It reads at most size bytes:
// net/http would otherwise drain the rest of r to report it too long. It hides
// r's Close, which minio-go calls on bodies that have one, while r belongs to
// the caller. And it keeps r seekable when it is, which is what lets minio-go
// retry a failed request instead of failing the call.
func body(r io.Reader, size int64) io.Reader {
	if rs, ok := r.(io.ReadSeeker); ok {
		if start, err := rs.Seek(0, io.SeekCurrent); err == nil {
			return &sectionSeeker{rs: rs, start: start, size: size}
		}
	}
	return io.LimitReader(r, size)
}

// sectionSeeker is bytes [start, start+size) of rs, seekable within them.
type sectionSeeker struct {
	// mu is held while rs is read or moved. net/http may still read a
	// request's body after RoundTrip returned (its Transport's
	// documentation says so), when a call's reader is its caller's again,
	// and minio-go seeks it back for its next try meanwhile: done waits
	// for the read under way to end and refuses those after.
	mu               sync.Mutex
	closed           bool
	rs               io.ReadSeeker
	start, size, off int64
}

// errBodyDone is what reading a body gets once its call returned.
var errBodyDone = errors.New("storage/s3: the request's body is read after its call returned")

// done ends the reading of b, if it is a sectionSeeker, once the call it is
// the body of returned.
func done(b io.Reader) {
	if s, ok := b.(*sectionSeeker); ok {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	}
}

func (s *sectionSeeker) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errBodyDone
	}
	return s.read(p)
}

func (s *sectionSeeker) read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if rest := s.size - s.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := s.rs.Read(p)
	s.off += int64(n)
	return n, err
}

// WriteTo writes what is left of the section. When rs holds exactly that in
// memory (a part buffer, as a bytes.Reader), it goes in one Write, which
// sendConn passes to the socket whole.
func (s *sectionSeeker) WriteTo(w io.Writer) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errBodyDone
	}
	if held, ok := s.rs.(heldBytes); ok && int64(held.Len()) == s.size-s.off {
		n, err := held.WriteTo(w)
		s.off += n
		return n, err
	}
	return io.Copy(w, readFunc(s.read))
}

// readFunc is a Read method.
type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

func (s *sectionSeeker) Seek(offset int64, whence int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errBodyDone
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, errors.New("storage/s3: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("storage/s3: negative position")
	}
	if _, err := s.rs.Seek(s.start+offset, io.SeekStart); err != nil {
		return 0, err
	}
	s.off = offset
	return offset, nil
}
