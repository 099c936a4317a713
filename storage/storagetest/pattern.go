package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Pattern is a reproducible pseudo-random byte stream of a fixed size. Byte i
// depends only on the seed and i, so any range can be produced on its own:
// tests upload and compare many megabytes without holding them, and two
// patterns with different seeds differ almost everywhere, so a part stored in
// the wrong place does not go unnoticed.
//
// Pattern implements io.Reader, io.Seeker and io.ReaderAt.
type Pattern struct {
	seed uint64
	size int64
	off  int64
}

var (
	_ io.ReadSeeker = (*Pattern)(nil)
	_ io.ReaderAt   = (*Pattern)(nil)
)

// NewPattern returns the stream of size bytes for seed, positioned at its
// start.
func NewPattern(seed uint64, size int64) *Pattern {
	return &Pattern{seed: mix(seed), size: size}
}

// Size returns the length of the stream.
func (p *Pattern) Size() int64 { return p.size }

// Section returns bytes [off, off+n) of the stream as a reader of their own,
// for instance one part of a multipart upload.
func (p *Pattern) Section(off, n int64) *io.SectionReader {
	return io.NewSectionReader(p, off, n)
}

// Read reads from the current offset.
func (p *Pattern) Read(b []byte) (int, error) {
	n, err := p.ReadAt(b, p.off)
	p.off += int64(n)
	return n, err
}

// ReadAt fills b with the bytes at off.
func (p *Pattern) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("storagetest: negative offset")
	}
	if off >= p.size {
		return 0, io.EOF
	}
	var err error
	if rest := p.size - off; int64(len(b)) > rest {
		b = b[:rest]
		err = io.EOF
	}
	for i := range b {
		pos := off + int64(i)
		// One 64-bit value per 8 bytes keeps generation cheap.
		b[i] = byte(mix(p.seed+uint64(pos/8)) >> (8 * (pos % 8)))
	}
	return len(b), err
}

// Seek sets the offset for the next Read.
func (p *Pattern) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += p.off
	case io.SeekEnd:
		offset += p.size
	default:
		return 0, errors.New("storagetest: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("storagetest: negative position")
	}
	p.off = offset
	return offset, nil
}

// mix is SplitMix64's finalizer: consecutive inputs give unrelated outputs.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Compare reads want and got to their ends and reports the first difference:
// the offset of the first differing byte, or which one is shorter. It holds
// two small buffers, whatever the length.
func Compare(want, got io.Reader) error {
	const chunk = 64 << 10
	wb := make([]byte, chunk)
	gb := make([]byte, chunk)
	var off int64
	for {
		wn, werr := io.ReadFull(want, wb)
		gn, gerr := io.ReadFull(got, gb)
		if werr != nil && werr != io.EOF && werr != io.ErrUnexpectedEOF {
			return fmt.Errorf("reading expected content at %d: %w", off, werr)
		}
		if gerr != nil && gerr != io.EOF && gerr != io.ErrUnexpectedEOF {
			return fmt.Errorf("reading content at %d: %w", off, gerr)
		}
		n := min(wn, gn)
		if i := firstDiff(wb[:n], gb[:n]); i >= 0 {
			return fmt.Errorf("content differs at byte %d: got %#02x, want %#02x", off+int64(i), gb[i], wb[i])
		}
		off += int64(n)
		switch {
		case wn > gn:
			return fmt.Errorf("content ends at byte %d, want more", off)
		case gn > wn:
			return fmt.Errorf("content goes on past byte %d, want the end there", off)
		case wn < chunk:
			return nil
		}
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
