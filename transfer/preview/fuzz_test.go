package preview

import (
	"bytes"
	"errors"
	"image"
	"testing"
)

// The seeds of these targets are in testdata/fuzz; f.Add gives those that
// are easier to build in Go.

func FuzzOrientation(f *testing.F) {
	f.Add(minimalExif(6)[4+len(exifHeader):])
	f.Fuzz(func(t *testing.T, tiff []byte) {
		o := exifOrientation(tiff)
		if o < 0 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
		// The same bytes as an APP1 segment of a JPEG header.
		if len(tiff) <= 0xFFFF-2-len(exifHeader) {
			hdr := append([]byte{0xFF, markerSOI}, seg(markerAPP1, []byte(exifHeader), tiff)...)
			if got := headerOrientation(hdr); got != o {
				t.Fatalf("in a header: %d, alone: %d", got, o)
			}
		}
	})
}

func FuzzStripJPEG(f *testing.F) {
	f.Add([]byte("\xFF\xD8\xFF\xD9"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		changed, err := StripJPEG(&out, bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error of no kind: %v", err)
			}
			if errors.Is(err, ErrUnsupported) && out.Len() > 0 {
				t.Fatalf("wrote %d bytes for input it does not take", out.Len())
			}
			return
		}
		if !changed && !bytes.Equal(out.Bytes(), in) {
			t.Fatal("changed = false but the output differs")
		}
		if changed && bytes.Equal(out.Bytes(), in) {
			t.Fatal("changed = true but the output is the input")
		}
		var again bytes.Buffer
		changed, err = StripJPEG(&again, bytes.NewReader(out.Bytes()))
		if err != nil || changed || !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatalf("stripping twice: changed %v, err %v", changed, err)
		}
	})
}

func FuzzMake(f *testing.F) {
	f.Add(encodePNG(f, cornerImage(9, 7)))
	f.Add(encodeJPEG(f, cornerImage(9, 7)))
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg := Config{MaxSide: 16, MaxPixels: 1 << 20}
		img, err := Make(bytes.NewReader(in), "", cfg)
		if err != nil {
			if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error of no kind: %v", err)
			}
			return
		}
		m, _, err := image.Decode(bytes.NewReader(img.Thumb))
		if err != nil {
			t.Fatalf("thumbnail does not decode: %v", err)
		}
		b := m.Bounds()
		if b.Empty() || b.Dx() > cfg.MaxSide || b.Dy() > cfg.MaxSide || b.Dx() > img.Width || b.Dy() > img.Height {
			t.Fatalf("thumbnail %v of a %d×%d image", b, img.Width, img.Height)
		}
	})
}
