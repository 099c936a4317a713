package preview

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// JPEG markers this file acts on.
const (
	markerSOI   = 0xD8
	markerEOI   = 0xD9
	markerSOS   = 0xDA
	markerAPP1  = 0xE1 // Exif, XMP
	markerAPP13 = 0xED // Photoshop image resources, IPTC
	markerCOM   = 0xFE
)

// maxFill bounds the 0xFF fill bytes accepted before a marker. The standard
// allows any number, but no encoder writes more than a few, and a bound keeps
// a segment in one fixed buffer.
const maxFill = 64

// segment is one marker segment of a JPEG header.
type segment struct {
	marker byte
	// raw is the segment exactly as read: fill bytes, 0xFF, the marker and,
	// unless the marker stands alone, the length and the payload. It aliases
	// the reader's buffer, valid until the next call.
	raw []byte
	// payload follows the length; nil for a marker that stands alone.
	payload []byte
}

// segmentReader reads a JPEG header segment by segment, after the SOI marker.
// It holds one segment at a time, so its memory is fixed (64 KiB and a bit)
// whatever the file.
type segmentReader struct {
	r   io.ByteReader
	rr  io.Reader
	buf []byte
}

func newSegmentReader(r interface {
	io.Reader
	io.ByteReader
}) *segmentReader {
	return &segmentReader{r: r, rr: r, buf: make([]byte, 0, maxFill+4+0xFFFF)}
}

// next returns the next segment. io.EOF becomes io.ErrUnexpectedEOF: a
// header always ends with SOS or EOI, so running out of bytes is truncation.
func (s *segmentReader) next() (segment, error) {
	b := s.buf[:0]
	c, err := s.r.ReadByte()
	if err != nil {
		return segment{}, noEOF(err)
	}
	if c != 0xFF {
		return segment{}, fmt.Errorf("byte %#02x where a marker should start", c)
	}
	b = append(b, c)
	for c == 0xFF {
		if c, err = s.r.ReadByte(); err != nil {
			return segment{}, noEOF(err)
		}
		b = append(b, c)
		if len(b) > maxFill+2 {
			return segment{}, errors.New("too many fill bytes before a marker")
		}
	}
	m := c
	switch {
	case m == 0x00:
		return segment{}, errors.New("0xFF00 in the header")
	case m == markerSOI:
		return segment{}, errors.New("a second SOI marker")
	case m == 0x01 || m >= 0xD0 && m <= markerEOI: // TEM, RSTn, EOI: no length
		return segment{marker: m, raw: b}, nil
	}
	start := len(b) + 2
	b = b[:start]
	if _, err := io.ReadFull(s.rr, b[start-2:start]); err != nil {
		return segment{}, noEOF(err)
	}
	n := int(b[start-2])<<8 | int(b[start-1])
	if n < 2 {
		return segment{}, fmt.Errorf("segment %#02x has length %d", m, n)
	}
	b = b[:start+n-2]
	if _, err := io.ReadFull(s.rr, b[start:]); err != nil {
		return segment{}, noEOF(err)
	}
	return segment{marker: m, raw: b, payload: b[start:]}, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// exifTIFF returns the TIFF bytes of an APP1 segment holding Exif data.
func exifTIFF(s segment) ([]byte, bool) {
	if s.marker != markerAPP1 || !bytes.HasPrefix(s.payload, []byte(exifHeader)) {
		return nil, false
	}
	return s.payload[len(exifHeader):], true
}

// headerOrientation returns the EXIF orientation found in the APP1 segments
// of a JPEG's header, hdr being at least the bytes image/jpeg's DecodeConfig
// read. It gives 0 when there is none or the header does not parse: a photo
// shown unturned beats no thumbnail.
func headerOrientation(hdr []byte) int {
	if len(hdr) < 2 || hdr[0] != 0xFF || hdr[1] != markerSOI {
		return 0
	}
	sr := newSegmentReader(bytes.NewReader(hdr[2:]))
	for {
		s, err := sr.next()
		if err != nil {
			return 0
		}
		// Viewers take the first Exif segment, and Exif belongs before
		// the frame header; stop there as they do.
		if tiff, ok := exifTIFF(s); ok {
			return exifOrientation(tiff)
		}
		if s.marker >= 0xC0 && s.marker <= 0xCF && s.marker != 0xC4 && s.marker != 0xC8 && s.marker != 0xCC ||
			s.marker == markerSOS || s.marker == markerEOI {
			return 0
		}
	}
}

// StripJPEG copies the JPEG in src to dst without the metadata that can tell
// where, when and with what a photo was taken: every APP1 segment (Exif with
// its GPS data, camera serial numbers and embedded thumbnail; XMP), APP13
// (Photoshop, IPTC) and COM comments. The orientation survives: when the
// first Exif segment has an Orientation other than 1, a minimal Exif segment
// holding only that tag takes its place, so that viewers still show the photo
// upright. Everything else (JFIF, ICC profiles, Adobe colour transform,
// tables) is kept, and everything from the first SOS marker on, including
// trailing data, is copied as it is with io.Copy.
//
// changed is false only when dst received exactly the bytes of src, so that
// a caller may then keep the stored object instead of rewriting it; stripping
// a stripped file again reports false.
//
// src is read as a stream, one header segment at a time, so memory stays
// under 70 KiB whatever its size. When src does not start with a JPEG SOI
// marker, StripJPEG returns an error matching ErrUnsupported and has written
// nothing. Any other error (ErrCorrupt for a broken header, or src's or
// dst's own error) may come after part of the output was written: the caller
// must then discard dst's content.
//
// Metadata after the first SOS is not looked at: segments between the scans
// of a progressive JPEG, and images appended after EOI such as the gain maps
// of a Multi-Picture (MPF) file, keep theirs.
func StripJPEG(dst io.Writer, src io.Reader) (changed bool, err error) {
	sr := &sourceReader{r: src}
	br := bufio.NewReader(sr)
	var soi [2]byte
	if _, err := io.ReadFull(br, soi[:]); err != nil || soi != [2]byte{0xFF, markerSOI} {
		if sr.err != nil {
			return false, sr.err
		}
		return false, fmt.Errorf("%w: not a JPEG", ErrUnsupported)
	}
	if _, err := dst.Write(soi[:]); err != nil {
		return false, err
	}
	segs := newSegmentReader(br)
	exifSeen := false
	for {
		s, err := segs.next()
		if err != nil {
			return changed, sr.blame(err)
		}
		switch s.marker {
		case markerSOS, markerEOI:
			if _, err := dst.Write(s.raw); err != nil {
				return changed, err
			}
			// Entropy-coded data is most of the file and cannot hold
			// markers of interest before the next scan: copy it whole.
			if _, err := io.Copy(dst, br); err != nil {
				return changed, err
			}
			return changed, nil
		case markerAPP1:
			var keep []byte
			if tiff, ok := exifTIFF(s); ok && !exifSeen {
				exifSeen = true
				if o := exifOrientation(tiff); o > 1 {
					keep = minimalExif(o)
				}
			}
			// A file stripped before has exactly the segment we would
			// write: keeping it is no change.
			if !bytes.Equal(keep, s.raw) {
				changed = true
			}
			if keep != nil {
				if _, err := dst.Write(keep); err != nil {
					return changed, err
				}
			}
			continue
		case markerAPP13, markerCOM:
			changed = true
			continue
		}
		if _, err := dst.Write(s.raw); err != nil {
			return changed, err
		}
	}
}
