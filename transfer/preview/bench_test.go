package preview

import (
	"bytes"
	"encoding/binary"
	"image"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// photo12MP is a 4000×3000 JPEG with noise over gradients, so that it
// compresses like a photo (about 5 MB), with a phone's Exif, turned.
var photo12MP = sync.OnceValue(func() []byte {
	const w, h = 4000, 3000
	m := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	rng := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Y[y*m.YStride+x] = uint8(x*200/w + rng.IntN(56))
		}
	}
	for i := range m.Cb {
		m.Cb[i] = uint8(96 + rng.IntN(64))
		m.Cr[i] = uint8(96 + rng.IntN(64))
	}
	return withSegments(encodeJPEG(&testing.B{}, m), cameraExif(binary.LittleEndian, 6))
})

func BenchmarkMake12MPJPEG(b *testing.B) {
	data := photo12MP()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		img, err := Make(bytes.NewReader(data), "image/jpeg", Config{})
		if err != nil {
			b.Fatal(err)
		}
		if img.Width != 3000 || img.Height != 4000 {
			b.Fatalf("%d×%d", img.Width, img.Height)
		}
	}
}

func BenchmarkStripJPEG12MP(b *testing.B) {
	data := photo12MP()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := StripJPEG(io.Discard, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
