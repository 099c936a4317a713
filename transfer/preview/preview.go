package preview

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"strings"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// Defaults of Config's zero fields, exported for the flags that set them.
const (
	// DefaultMaxSide is the longest side of a thumbnail: sharp in a chat
	// list on a high-density screen, about 50 KB as a JPEG.
	DefaultMaxSide = 640
	// DefaultMaxPixels admits any photo of today's phones and most cameras
	// (50 MP); the package documentation tells the memory that takes.
	DefaultMaxPixels = 50_000_000
)

// jpegQuality is a usual quality for thumbnails: artefacts are not visible
// at their size, and 90 would double the bytes.
const jpegQuality = 80

// maxHeader bounds what is held while reading an image's header, before its
// dimensions are known. A photo's header is its Exif (at most 64 KiB), ICC
// profile and XMP; 1 MiB leaves room and refuses a file that would make us
// buffer without end.
const maxHeader = 1 << 20

// Errors Make and StripJPEG return, for errors.Is. A storage error from the
// reader is returned as it is, so that a caller can tell a file that will
// never have a preview (these) from a failure worth retrying.
var (
	// ErrUnsupported: the type is not one Make or StripJPEG handles, the
	// bytes are not of the declared type, or they use a feature the
	// decoder lacks (such as arithmetic-coded JPEG).
	ErrUnsupported = errors.New("preview: unsupported image type")
	// ErrTooLarge: the image has more pixels than Config.MaxPixels, or its
	// header does not fit in 1 MiB. It is returned before the pixels are
	// allocated.
	ErrTooLarge = errors.New("preview: image too large")
	// ErrCorrupt: the bytes do not decode.
	ErrCorrupt = errors.New("preview: corrupt image")
)

// Config sets the limits of Make. The zero value gives the defaults.
type Config struct {
	// MaxSide is the longest side of a thumbnail, in pixels; smaller
	// images keep their size. Zero or less means DefaultMaxSide.
	MaxSide int
	// MaxPixels is the largest image, in width × height, that Make
	// decodes; it bounds the memory of a call. Zero or less means
	// DefaultMaxPixels.
	MaxPixels int64
}

func (c Config) withDefaults() Config {
	if c.MaxSide <= 0 {
		c.MaxSide = DefaultMaxSide
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = DefaultMaxPixels
	}
	return c
}

// Image is a thumbnail and what a client needs to lay out the original.
type Image struct {
	// Width and Height are the original's, as displayed: after its EXIF
	// orientation, so a 4000×3000 photo taken upright reports 3000×4000.
	Width, Height int
	// Thumb is the encoded thumbnail, already upright.
	Thumb []byte
	// ContentType is Thumb's: "image/png" when the original has
	// transparency, "image/jpeg" otherwise.
	ContentType string
}

// format is one decoder Make uses.
type format struct {
	contentType  string
	magic        func([]byte) bool
	decodeConfig func(io.Reader) (image.Config, error)
	decode       func(io.Reader) (image.Image, error)
}

// formats are called directly, not through image.Decode, so that a decoder
// another package registers (TIFF, BMP) is not run on user files.
var formats = []format{
	{"image/jpeg", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\xFF\xD8\xFF")) },
		jpeg.DecodeConfig, jpeg.Decode},
	{"image/png", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) },
		png.DecodeConfig, png.Decode},
	{"image/gif", func(b []byte) bool {
		return bytes.HasPrefix(b, []byte("GIF87a")) || bytes.HasPrefix(b, []byte("GIF89a"))
	}, gif.DecodeConfig, gif.Decode}, // gif.Decode stops after the first frame
	{"image/webp", func(b []byte) bool {
		return len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP"
	}, webp.DecodeConfig, webp.Decode},
}

// Make decodes the image in r and returns its thumbnail and its displayed
// size. contentType is the type the file was stored with (parameters and
// case do not matter); "" means find it from the bytes. Types other than
// image/jpeg, image/png, image/gif and image/webp return ErrUnsupported
// without reading r, and so does content of another format than declared.
//
// r is read once, as a stream: the header is kept (at most 1 MiB) while the
// dimensions are checked against cfg.MaxPixels, then replayed to the decoder.
// Make may return before r's end. It runs on the calling goroutine and does
// not stop while decoding: to bound its time, give it a reader that fails
// when the caller's context ends. Calls are independent and may run in
// parallel; see the package documentation for the memory each takes.
func Make(r io.Reader, contentType string, cfg Config) (Image, error) {
	cfg = cfg.withDefaults()
	declared := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	if declared != "" && formatFor(declared) == nil {
		return Image{}, fmt.Errorf("%w: %q", ErrUnsupported, declared)
	}
	m, o, err := decode(r, declared, cfg.MaxPixels)
	if err != nil {
		return Image{}, err
	}

	b := m.Bounds()
	img := Image{Width: b.Dx(), Height: b.Dy()}
	if o >= 5 {
		img.Width, img.Height = img.Height, img.Width
	}
	tw, th := fit(img.Width, img.Height, cfg.MaxSide)
	if o >= 5 {
		tw, th = th, tw // scaling happens before turning, in stored orientation
	}
	thumb := orient(shrink(m, tw, th), o)

	var out bytes.Buffer
	if opaque(m) {
		img.ContentType = "image/jpeg"
		err = jpeg.Encode(&out, thumb, &jpeg.Options{Quality: jpegQuality})
	} else {
		img.ContentType = "image/png"
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&out, thumb)
	}
	if err != nil {
		return Image{}, fmt.Errorf("preview: encoding the thumbnail: %w", err)
	}
	img.Thumb = out.Bytes()
	return img, nil
}

// decode decodes the image in r, of the declared type or of any when it is
// "", refusing it before its pixels are allocated when it has more than
// maxPixels. It returns the image, whose bounds start at (0, 0), and its
// EXIF orientation (0 when it has none).
func decode(r io.Reader, declared string, maxPixels int64) (image.Image, int, error) {
	src := &sourceReader{r: r}
	br := bufio.NewReader(src)
	lead, _ := br.Peek(12)
	var f *format
	for i := range formats {
		if formats[i].magic(lead) {
			f = &formats[i]
		}
	}
	switch {
	case src.err != nil:
		return nil, 0, src.err
	case f == nil:
		return nil, 0, fmt.Errorf("%w: content is not JPEG, PNG, GIF or WebP", ErrUnsupported)
	case declared != "" && declared != f.contentType:
		return nil, 0, fmt.Errorf("%w: declared %s, content is %s", ErrUnsupported, declared, f.contentType)
	}

	hdr := &headerBuffer{}
	ic, err := safely(func() (image.Config, error) { return f.decodeConfig(io.TeeReader(br, hdr)) })
	if hdr.full {
		return nil, 0, fmt.Errorf("%w: header longer than %d bytes", ErrTooLarge, maxHeader)
	}
	if err != nil {
		return nil, 0, src.blame(err)
	}
	if ic.Width <= 0 || ic.Height <= 0 {
		return nil, 0, fmt.Errorf("%w: %d×%d pixels", ErrCorrupt, ic.Width, ic.Height)
	}
	if px := int64(ic.Width) * int64(ic.Height); px > maxPixels {
		return nil, 0, fmt.Errorf("%w: %d×%d pixels, more than %d", ErrTooLarge, ic.Width, ic.Height, maxPixels)
	}
	o := 0
	switch f.contentType {
	case "image/jpeg":
		o = headerOrientation(hdr.buf)
	case "image/webp":
		// x/image/webp finds no frame in an animation and would call it
		// corrupt; the VP8X header says so first.
		if b := hdr.buf; len(b) > 20 && string(b[12:16]) == "VP8X" && b[20]&0x02 != 0 {
			return nil, 0, fmt.Errorf("%w: animated WebP", ErrUnsupported)
		}
	}

	m, err := safely(func() (image.Image, error) {
		return f.decode(io.MultiReader(bytes.NewReader(hdr.buf), br))
	})
	if err != nil {
		return nil, 0, src.blame(err)
	}
	screen := image.Rect(0, 0, ic.Width, ic.Height)
	if b := m.Bounds(); b.Empty() || !b.In(screen) {
		return nil, 0, fmt.Errorf("%w: decoded %v, header said %d×%d", ErrCorrupt, b, ic.Width, ic.Height)
	} else if b != screen {
		// A GIF's first frame may cover part of its screen only: lay it
		// on the screen, transparent elsewhere, as browsers show it.
		c := image.NewRGBA(screen)
		draw.Draw(c, b, m, b.Min, draw.Src)
		m = c
	}
	return m, o, nil
}

func formatFor(contentType string) *format {
	for i := range formats {
		if formats[i].contentType == contentType {
			return &formats[i]
		}
	}
	return nil
}

// fit returns w×h scaled so that its longest side is maxSide, or w×h when
// that would enlarge it; a side never rounds down to nothing.
func fit(w, h, maxSide int) (int, int) {
	long := int64(max(w, h))
	if long <= int64(maxSide) {
		return w, h
	}
	scale := func(n int) int { return max(1, int((int64(n)*int64(maxSide)+long/2)/long)) }
	return scale(w), scale(h)
}

// opaque reports whether m has no transparent or translucent pixel. Every
// image type of the standard library answers; one that does not is treated
// as translucent, since PNG keeps opaque pixels too.
func opaque(m image.Image) bool {
	o, ok := m.(interface{ Opaque() bool })
	return ok && o.Opaque()
}

// safely runs a decoder, turning a panic into ErrCorrupt. Decoders of the
// standard library and x/image are meant not to panic, yet they get files
// from anyone, and a bug in one must cost one thumbnail, not the server.
func safely[T any](f func() (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrCorrupt, p)
		}
	}()
	return f()
}

// headerBuffer keeps what DecodeConfig read, to replay it to the decoder,
// up to maxHeader bytes; past that it fails the read, ending DecodeConfig.
type headerBuffer struct {
	buf  []byte
	full bool
}

func (h *headerBuffer) Write(p []byte) (int, error) {
	if len(h.buf)+len(p) > maxHeader {
		h.full = true
		return 0, ErrTooLarge
	}
	h.buf = append(h.buf, p...)
	return len(p), nil
}

// sourceReader remembers the first error of the reader it wraps other than
// io.EOF, because decoders pass read errors on in their own ways (wrapped,
// replaced by io.ErrUnexpectedEOF) and a storage failure must not be taken
// for a corrupt file.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// blame returns the source's error if it had one, else err as content that
// does not decode: ErrUnsupported for a feature the decoder lacks,
// ErrCorrupt for the rest.
func (s *sourceReader) blame(err error) error {
	if s.err != nil {
		return s.err
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) {
		return err
	}
	var ju jpeg.UnsupportedError
	var pu png.UnsupportedError
	if errors.As(err, &ju) || errors.As(err, &pu) {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}
