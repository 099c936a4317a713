package preview

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	_ "image/jpeg" // image.Decode of thumbnails
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/iotest"
)

// decodeThumb decodes a thumbnail, checking it is of the type Make says.
func decodeThumb(t *testing.T, img Image) image.Image {
	t.Helper()
	m, format, err := image.Decode(bytes.NewReader(img.Thumb))
	if err != nil {
		t.Fatalf("thumbnail does not decode: %v", err)
	}
	if "image/"+format != img.ContentType {
		t.Fatalf("thumbnail is %s, ContentType says %s", format, img.ContentType)
	}
	return m
}

func TestMakeSizes(t *testing.T) {
	tests := []struct {
		name          string
		w, h, maxSide int
		wantW, wantH  int
	}{
		{"landscape", 1000, 750, 0, 640, 480},
		{"portrait", 750, 1000, 0, 480, 640},
		{"halved first", 1300, 975, 0, 640, 480},
		{"small, not enlarged", 300, 200, 0, 300, 200},
		{"exactly 640", 640, 640, 0, 640, 640},
		{"long side exactly 640", 640, 400, 0, 640, 400},
		{"just over", 641, 641, 0, 640, 640},
		{"custom side", 1000, 500, 100, 100, 50},
		{"thin strip keeps a pixel", 3000, 2, 0, 640, 1},
		{"odd sizes", 1333, 999, 0, 640, 480},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			jpg := encodeJPEG(t, cornerImage(tt.w, tt.h))
			img, err := Make(bytes.NewReader(jpg), "image/jpeg", Config{MaxSide: tt.maxSide})
			if err != nil {
				t.Fatal(err)
			}
			if img.Width != tt.w || img.Height != tt.h {
				t.Errorf("original reported %d×%d, want %d×%d", img.Width, img.Height, tt.w, tt.h)
			}
			m := decodeThumb(t, img)
			if got := m.Bounds().Size(); got != image.Pt(tt.wantW, tt.wantH) {
				t.Errorf("thumbnail %v, want %d×%d", got, tt.wantW, tt.wantH)
			}
			if img.ContentType != "image/jpeg" {
				t.Errorf("opaque image gave %s", img.ContentType)
			}
			if tt.wantW >= 8 && tt.wantH >= 8 {
				// The red corner survives scaling: scaling is not off by a
				// turn or a mirror.
				assertCorner(t, m, topLeft)
			}
		})
	}
}

type corner int

const (
	topLeft corner = iota
	topRight
	bottomRight
	bottomLeft
)

func (c corner) String() string {
	return [...]string{"top-left", "top-right", "bottom-right", "bottom-left"}[c]
}

// assertCorner checks that of the four corners of m, only want is red.
func assertCorner(t *testing.T, m image.Image, want corner) {
	t.Helper()
	b := m.Bounds()
	const in = 2 // off the edge, where JPEG and filters blur
	points := [...]image.Point{
		{b.Min.X + in, b.Min.Y + in},
		{b.Max.X - 1 - in, b.Min.Y + in},
		{b.Max.X - 1 - in, b.Max.Y - 1 - in},
		{b.Min.X + in, b.Max.Y - 1 - in},
	}
	for c, p := range points {
		r, g, bl, _ := m.At(p.X, p.Y).RGBA()
		isRed := r>>8 > 170 && g>>8 < 80 && bl>>8 < 80
		if isRed != (corner(c) == want) {
			t.Errorf("%v corner at %v is %v, want red only at %v", corner(c), p, m.At(p.X, p.Y), want)
		}
	}
}

func TestMakeOrientation(t *testing.T) {
	// Stored 160×80 with red at the top-left; where the red goes once shown
	// follows the EXIF definition of each orientation.
	tests := []struct {
		o       int
		order   byteOrder
		corner  corner
		swapped bool
	}{
		{1, binary.BigEndian, topLeft, false},
		{2, binary.LittleEndian, topRight, false},
		{3, binary.BigEndian, bottomRight, false},
		{4, binary.LittleEndian, bottomLeft, false},
		{5, binary.BigEndian, topLeft, true},
		{6, binary.LittleEndian, topRight, true},
		{7, binary.BigEndian, bottomRight, true},
		{8, binary.LittleEndian, bottomLeft, true},
		{3, binary.LittleEndian, bottomRight, false},
		{6, binary.BigEndian, topRight, true},
		{8, binary.BigEndian, bottomLeft, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %v", tt.o, tt.order), func(t *testing.T) {
			jpg := withSegments(encodeJPEG(t, cornerImage(160, 80)), cameraExif(tt.order, tt.o))
			img, err := Make(bytes.NewReader(jpg), "image/jpeg", Config{MaxSide: 80})
			if err != nil {
				t.Fatal(err)
			}
			wantW, wantH, thumbW, thumbH := 160, 80, 80, 40
			if tt.swapped {
				wantW, wantH, thumbW, thumbH = 80, 160, 40, 80
			}
			if img.Width != wantW || img.Height != wantH {
				t.Errorf("original reported %d×%d, want %d×%d", img.Width, img.Height, wantW, wantH)
			}
			m := decodeThumb(t, img)
			if got := m.Bounds().Size(); got != image.Pt(thumbW, thumbH) {
				t.Fatalf("thumbnail %v, want %d×%d", got, thumbW, thumbH)
			}
			assertCorner(t, m, tt.corner)
		})
	}
}

func TestMakeReportsDisplayedSizeOfTurnedPhoto(t *testing.T) {
	jpg := withSegments(encodeJPEG(t, cornerImage(400, 300)), orientationExif(binary.LittleEndian, 6, 3))
	img, err := Make(bytes.NewReader(jpg), "", Config{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Width != 300 || img.Height != 400 {
		t.Errorf("reported %d×%d, want 300×400", img.Width, img.Height)
	}
}

func TestMakeFormats(t *testing.T) {
	opaquePNG := cornerImage(100, 60)
	clear := image.NewNRGBA(image.Rect(0, 0, 100, 60))
	for i := range clear.Pix {
		clear.Pix[i] = 0xC0
	}
	clear.SetNRGBA(0, 0, color.NRGBA{}) // one transparent pixel is transparency
	anim := &gif.GIF{Image: []*image.Paletted{
		gifFrame(color.RGBA{255, 0, 0, 255}), gifFrame(color.RGBA{0, 0, 255, 255}),
	}, Delay: []int{10, 10}}
	var animGIF bytes.Buffer
	if err := gif.EncodeAll(&animGIF, anim); err != nil {
		t.Fatal(err)
	}
	seeThrough := gifFrame(color.RGBA{})
	var clearGIF bytes.Buffer
	if err := gif.Encode(&clearGIF, seeThrough, nil); err != nil {
		t.Fatal(err)
	}
	part := image.NewPaletted(image.Rect(20, 0, 40, 30), color.Palette{color.RGBA{255, 0, 0, 255}})
	var partGIF bytes.Buffer
	if err := gif.EncodeAll(&partGIF, &gif.GIF{Image: []*image.Paletted{part}, Delay: []int{0},
		Config: image.Config{ColorModel: part.Palette, Width: 40, Height: 30}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, declared string
		data           []byte
		w, h           int
		wantType       string
		check          func(*testing.T, image.Image)
	}{
		{"opaque PNG", "image/png", encodePNG(t, opaquePNG), 100, 60, "image/jpeg",
			func(t *testing.T, m image.Image) { assertCorner(t, m, topLeft) }},
		{"PNG with transparency", "image/png", encodePNG(t, clear), 100, 60, "image/png",
			func(t *testing.T, m image.Image) {
				if _, _, _, a := m.At(0, 0).RGBA(); a != 0 {
					t.Errorf("transparent pixel has alpha %#x", a)
				}
			}},
		{"animated GIF, first frame", "image/gif", animGIF.Bytes(), 40, 30, "image/jpeg",
			func(t *testing.T, m image.Image) {
				if r, _, b, _ := m.At(20, 15).RGBA(); r>>8 < 200 || b>>8 > 50 {
					t.Errorf("thumbnail is %v, want the red first frame", m.At(20, 15))
				}
			}},
		{"GIF with transparency", "image/gif", clearGIF.Bytes(), 40, 30, "image/png", nil},
		{"GIF whose first frame covers half the screen", "image/gif", partGIF.Bytes(), 40, 30, "image/png",
			func(t *testing.T, m image.Image) {
				if _, _, _, a := m.At(5, 15).RGBA(); a != 0 {
					t.Errorf("left half has alpha %#x, want transparent", a)
				}
				if r, _, _, a := m.At(35, 15).RGBA(); r>>8 < 200 || a != 0xffff {
					t.Errorf("right half is %v, want the red frame", m.At(35, 15))
				}
			}},
		{"lossy WebP", "image/webp", readTestdata(t, "video-001.lossy.webp"), 150, 103, "image/jpeg", nil},
		{"lossy WebP with alpha", "image/webp", readTestdata(t, "yellow_rose.lossy-with-alpha.webp"), 400, 301, "image/png", nil},
		{"lossless WebP with alpha", "image/webp", readTestdata(t, "gopher-doc.with-alpha.lossless.webp"), 75, 100, "image/png", nil},
		{"type found from the bytes", "", encodePNG(t, opaquePNG), 100, 60, "image/jpeg", nil},
		{"declared type with parameters", "Image/PNG; x=y", encodePNG(t, opaquePNG), 100, 60, "image/jpeg", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Make(bytes.NewReader(tt.data), tt.declared, Config{})
			if err != nil {
				t.Fatal(err)
			}
			if img.Width != tt.w || img.Height != tt.h || img.ContentType != tt.wantType {
				t.Errorf("got %d×%d %s, want %d×%d %s", img.Width, img.Height, img.ContentType, tt.w, tt.h, tt.wantType)
			}
			m := decodeThumb(t, img)
			if m.Bounds().Dx() != tt.w || m.Bounds().Dy() != tt.h {
				t.Errorf("small image scaled to %v", m.Bounds())
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func gifFrame(c color.Color) *image.Paletted {
	m := image.NewPaletted(image.Rect(0, 0, 40, 30), color.Palette{c, color.White})
	return m // all index 0
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hugeHeaders are tiny files whose headers declare an image far larger than
// MaxPixels.
func hugeHeaders(t *testing.T) map[string][]byte {
	jpg := encodeJPEG(t, cornerImage(8, 8))
	sof := bytes.Index(jpg, []byte{0xFF, 0xC0})
	binary.BigEndian.PutUint16(jpg[sof+5:], 60000) // height
	binary.BigEndian.PutUint16(jpg[sof+7:], 60000) // width

	pngb := encodePNG(t, cornerImage(1, 1))
	binary.BigEndian.PutUint32(pngb[16:], 60000) // IHDR width
	binary.BigEndian.PutUint32(pngb[20:], 60000) // IHDR height
	binary.BigEndian.PutUint32(pngb[29:], crc32.ChecksumIEEE(pngb[12:29]))

	var g bytes.Buffer
	if err := gif.Encode(&g, gifFrame(grey), nil); err != nil {
		t.Fatal(err)
	}
	gifb := g.Bytes()
	binary.LittleEndian.PutUint16(gifb[6:], 60000) // logical screen
	binary.LittleEndian.PutUint16(gifb[8:], 60000)

	// VP8X allows 2^24 a side but at most 2^31-1 pixels: 16000² it is.
	webpb := []byte("RIFF\x16\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00\x7f\x3e\x00\x7f\x3e\x00")
	return map[string][]byte{"image/jpeg": jpg, "image/png": pngb, "image/gif": gifb, "image/webp": webpb}
}

func TestMakeRefusesHugeImagesWithoutAllocating(t *testing.T) {
	for typ, data := range hugeHeaders(t) {
		t.Run(typ, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Make(bytes.NewReader(data), typ, Config{})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			// Decoding would take gigabytes; the header and buffers, a few
			// hundred kilobytes.
			if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
				t.Errorf("allocated %d bytes to refuse it", n)
			}
		})
	}
}

var errStorage = errors.New("storage: connection reset")

func TestMakeErrors(t *testing.T) {
	jpg := encodeJPEG(t, cornerImage(64, 64))
	manyAPP := [][]byte{}
	for range 20 {
		manyAPP = append(manyAPP, seg(0xE2, bytes.Repeat([]byte{1}, 0xFFF0)))
	}
	badCRC := encodePNG(t, cornerImage(16, 16))
	badCRC[len(badCRC)-20] ^= 0xFF // inside IDAT
	tests := []struct {
		name     string
		declared string
		r        io.Reader
		want     error
	}{
		{"HEIC", "image/heif", bytes.NewReader(jpg), ErrUnsupported},
		{"video", "video/mp4", bytes.NewReader(jpg), ErrUnsupported},
		{"PDF", "application/pdf", bytes.NewReader(jpg), ErrUnsupported},
		{"not an image", "", bytes.NewReader([]byte("hello, world")), ErrUnsupported},
		{"empty", "", bytes.NewReader(nil), ErrUnsupported},
		{"animated WebP", "image/webp", bytes.NewReader([]byte("RIFF\x2a\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x02\x00\x00\x00\x09\x00\x00\x09\x00\x00" +
			"ANIM\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00")), ErrUnsupported},
		{"content of another type", "image/png", bytes.NewReader(jpg), ErrUnsupported},
		{"truncated JPEG", "image/jpeg", bytes.NewReader(jpg[:len(jpg)/2]), ErrCorrupt},
		{"JPEG header only", "image/jpeg", bytes.NewReader([]byte("\xFF\xD8\xFF\xE0\x00")), ErrCorrupt},
		{"PNG with a bad checksum", "image/png", bytes.NewReader(badCRC), ErrCorrupt},
		{"header over 1 MiB", "image/jpeg", bytes.NewReader(withSegments(jpg, manyAPP...)), ErrTooLarge},
		{"storage fails at once", "image/jpeg", iotest.ErrReader(errStorage), errStorage},
		{"storage fails in the header", "image/jpeg", io.MultiReader(bytes.NewReader(jpg[:100]), iotest.ErrReader(errStorage)), errStorage},
		{"storage fails in the pixels", "image/jpeg", io.MultiReader(bytes.NewReader(jpg[:len(jpg)-50]), iotest.ErrReader(errStorage)), errStorage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Make(tt.r, tt.declared, Config{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.want == errStorage && errors.Is(err, ErrCorrupt) {
				t.Errorf("a storage failure is reported as a corrupt file: %v", err)
			}
		})
	}
}
