package preview

import (
	"encoding/binary"
	"image"
	"strings"
	"testing"
)

func TestExifOrientation(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	tiff := func(segment []byte) []byte { return segment[4+len(exifHeader):] }
	camera := tiff(cameraExif(le, 6))
	tests := []struct {
		name string
		tiff []byte
		want int
	}{
		{"little-endian SHORT", tiff(orientationExif(le, 6, 3)), 6},
		{"big-endian SHORT", tiff(orientationExif(be, 3, 3)), 3},
		{"little-endian LONG", tiff(orientationExif(le, 8, 4)), 8},
		{"big-endian LONG", tiff(orientationExif(be, 5, 4)), 5},
		{"after other tags, with a GPS IFD", camera, 6},
		{"no orientation", tiff(cameraExif(be, 0)), 0},
		{"zero", tiff(orientationExif(le, 0, 3)), 0},
		{"nine", tiff(orientationExif(be, 9, 3)), 0},
		{"wrong type", tiff(orientationExif(be, 6, 3))[:0], 0},
		{"bad byte order", append([]byte("IM*\x00"), tiff(orientationExif(le, 6, 3))[4:]...), 0},
		{"IFD past the end", []byte("MM\x00*\xff\xff\xff\xf0"), 0},
		{"IFD offset into the header", []byte("II*\x00\x04\x00\x00\x00\x01\x00"), 0},
		{"entry cut short", tiff(orientationExif(le, 6, 3))[:16], 0},
		{"count says more entries than there are", append([]byte("MM\x00*\x00\x00\x00\x08\xff\xff"), make([]byte, 11)...), 0},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exifOrientation(tt.tiff); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
	for o := 1; o <= 8; o++ {
		if got := exifOrientation(tiff(minimalExif(o))); got != o {
			t.Errorf("minimalExif(%d) reads back as %d", o, got)
		}
	}
}

func TestOrient(t *testing.T) {
	// Stored:  a b c
	//          d e f
	// and each orientation as shown, from the figures of the EXIF standard.
	tests := []struct {
		o    int
		want string
	}{
		{1, "abc/def"},
		{2, "cba/fed"},
		{3, "fed/cba"},
		{4, "def/abc"},
		{5, "ad/be/cf"},
		{6, "da/eb/fc"},
		{7, "fc/eb/da"},
		{8, "cf/be/ad"},
		{0, "abc/def"},
		{9, "abc/def"},
	}
	m := image.NewRGBA(image.Rect(10, 20, 13, 22)) // not at the origin, like a sub-image
	for i, c := range "abcdef" {
		p := m.PixOffset(10+i%3, 20+i/3)
		m.Pix[p] = byte(c)
	}
	for _, tt := range tests {
		d := orient(m, tt.o)
		var rows []string
		for y := d.Rect.Min.Y; y < d.Rect.Max.Y; y++ {
			var row []byte
			for x := d.Rect.Min.X; x < d.Rect.Max.X; x++ {
				row = append(row, d.Pix[d.PixOffset(x, y)])
			}
			rows = append(rows, string(row))
		}
		if got := strings.Join(rows, "/"); got != tt.want {
			t.Errorf("orientation %d: got %s, want %s", tt.o, got, tt.want)
		}
	}
}
