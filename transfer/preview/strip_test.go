package preview

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/jpeg"
	"io"
	"testing"
	"testing/iotest"
)

func TestStripJPEGRemovesMetadata(t *testing.T) {
	plain := encodeJPEG(t, cornerImage(64, 48))
	tests := []struct {
		name string
		in   []byte
		want []byte // exactly
	}{
		{"no orientation",
			withSegments(plain, jfifSegment, cameraExif(binary.BigEndian, 0), iccSegment, xmpSegment, photoshopSegment, commentSegment),
			withSegments(plain, jfifSegment, iccSegment)},
		{"orientation 1 is not kept",
			withSegments(plain, cameraExif(binary.LittleEndian, 1), xmpSegment),
			plain},
		{"orientation 6, little-endian",
			withSegments(plain, cameraExif(binary.LittleEndian, 6), iccSegment, xmpSegment, commentSegment),
			withSegments(plain, minimalExif(6), iccSegment)},
		{"orientation 3, big-endian, after JFIF",
			withSegments(plain, jfifSegment, cameraExif(binary.BigEndian, 3), photoshopSegment),
			withSegments(plain, jfifSegment, minimalExif(3))},
		{"orientation as a LONG",
			withSegments(plain, orientationExif(binary.LittleEndian, 8, 4)),
			withSegments(plain, minimalExif(8))},
		{"only the first Exif counts",
			withSegments(plain, cameraExif(binary.BigEndian, 6), cameraExif(binary.BigEndian, 8)),
			withSegments(plain, minimalExif(6))},
		{"fill bytes before a dropped marker",
			withSegments(plain, append([]byte{0xFF, 0xFF}, commentSegment...)),
			plain},
	}
	secrets := []string{cameraMake, gpsMethod, string(gpsLatitude), "GPSLatitude", "Photoshop", "secret comment", "GPS"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			changed, err := StripJPEG(&out, bytes.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Error("changed = false for a file with metadata")
			}
			for _, s := range secrets {
				if bytes.Contains(out.Bytes(), []byte(s)) {
					t.Errorf("output still holds %q", s)
				}
			}
			if !bytes.Equal(out.Bytes(), tt.want) {
				t.Errorf("output differs from the expected file:\n got %x\nwant %x", head(out.Bytes()), head(tt.want))
			}
			if got, want := headerOrientation(out.Bytes()), headerOrientation(tt.in); got != want && want > 1 {
				t.Errorf("orientation %d after stripping, was %d", got, want)
			}
			assertSamePixels(t, tt.in, out.Bytes())
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 120)] }

func assertSamePixels(t *testing.T, a, b []byte) {
	t.Helper()
	ma, err := jpeg.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("stripped file does not decode: %v", err)
	}
	ya, yb := ma.(*image.YCbCr), mb.(*image.YCbCr)
	if ya.Rect != yb.Rect || !bytes.Equal(ya.Y, yb.Y) || !bytes.Equal(ya.Cb, yb.Cb) || !bytes.Equal(ya.Cr, yb.Cr) {
		t.Error("stripped file decodes to other pixels")
	}
}

func TestStripJPEGUnchanged(t *testing.T) {
	plain := encodeJPEG(t, cornerImage(64, 48))
	tests := []struct {
		name string
		in   []byte
	}{
		{"no metadata", plain},
		{"JFIF and ICC profile", withSegments(plain, jfifSegment, iccSegment)},
		{"already stripped", withSegments(plain, minimalExif(6), iccSegment)},
		{"trailing data after EOI", append(append([]byte{}, plain...), "MPF secondary image"...)},
		{"no scan", []byte("\xFF\xD8\xFF\xD9")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			changed, err := StripJPEG(&out, iotest.OneByteReader(bytes.NewReader(tt.in)))
			if err != nil {
				t.Fatal(err)
			}
			if changed {
				t.Error("changed = true")
			}
			if !bytes.Equal(out.Bytes(), tt.in) {
				t.Error("output differs from the input")
			}
		})
	}
}

func TestStripJPEGKeepsOrientationForMake(t *testing.T) {
	in := withSegments(encodeJPEG(t, cornerImage(160, 80)), cameraExif(binary.LittleEndian, 8))
	var out bytes.Buffer
	if _, err := StripJPEG(&out, bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	img, err := Make(&out, "image/jpeg", Config{MaxSide: 80})
	if err != nil {
		t.Fatal(err)
	}
	if img.Width != 80 || img.Height != 160 {
		t.Errorf("stripped photo reports %d×%d, want 80×160", img.Width, img.Height)
	}
	assertCorner(t, decodeThumb(t, img), bottomLeft)
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		return 0, errStorage
	}
	w.after -= len(p)
	return len(p), nil
}

func TestStripJPEGErrors(t *testing.T) {
	jpg := withSegments(encodeJPEG(t, cornerImage(32, 32)), cameraExif(binary.BigEndian, 6))
	tests := []struct {
		name        string
		r           io.Reader
		w           io.Writer
		want        error
		wantNothing bool // nothing may have been written
	}{
		{"PNG", bytes.NewReader(encodePNG(t, cornerImage(4, 4))), nil, ErrUnsupported, true},
		{"empty", bytes.NewReader(nil), nil, ErrUnsupported, true},
		{"one byte", bytes.NewReader([]byte{0xFF}), nil, ErrUnsupported, true},
		{"truncated segment", bytes.NewReader(jpg[:40]), nil, ErrCorrupt, false},
		{"bad length", bytes.NewReader([]byte("\xFF\xD8\xFF\xE1\x00\x01")), nil, ErrCorrupt, false},
		{"no marker", bytes.NewReader([]byte("\xFF\xD8\x00\x00")), nil, ErrCorrupt, false},
		{"endless fill bytes", bytes.NewReader(append([]byte{0xFF, 0xD8}, bytes.Repeat([]byte{0xFF}, 1000)...)), nil, ErrCorrupt, false},
		{"storage fails at once", iotest.ErrReader(errStorage), nil, errStorage, true},
		{"storage fails in the header", io.MultiReader(bytes.NewReader(jpg[:30]), iotest.ErrReader(errStorage)), nil, errStorage, false},
		{"storage fails in the scan", io.MultiReader(bytes.NewReader(jpg[:len(jpg)-10]), iotest.ErrReader(errStorage)), nil, errStorage, false},
		{"writer fails", bytes.NewReader(jpg), &failWriter{after: 10}, errStorage, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := tt.w
			if w == nil {
				w = &out
			}
			_, err := StripJPEG(w, tt.r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.wantNothing && out.Len() > 0 {
				t.Errorf("wrote %d bytes", out.Len())
			}
		})
	}
}
