package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
	"time"
)

// cameraMake and gpsLatitude are metadata a phone writes, distinctive
// enough to look for in the stored bytes.
const cameraMake = "FerryCam Model X\x00"

// gpsLatitude is 48°51'29.6" as three big-endian RATIONALs.
var gpsLatitude = []byte{0, 0, 0, 48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 1, 40, 0, 0, 0, 10}

// cameraExif returns an APP1 Exif segment as a phone writes one: IFD0 with
// the camera's make, orientation o and a pointer to a GPS IFD holding a
// latitude.
func cameraExif(o uint16) []byte {
	be := binary.BigEndian
	const ifd0, gpsIFD = 8, 8 + 2 + 3*12 + 4
	const data = gpsIFD + 2 + 2*12 + 4
	entry := func(b []byte, tag, typ uint16, count uint32, value []byte) []byte {
		b = be.AppendUint16(b, tag)
		b = be.AppendUint16(b, typ)
		b = be.AppendUint32(b, count)
		return append(b, append(value, make([]byte, 4-len(value))...)...)
	}
	t := []byte("MM\x00*")
	t = be.AppendUint32(t, ifd0)
	t = be.AppendUint16(t, 3)
	t = entry(t, 0x010F, 2, uint32(len(cameraMake)), be.AppendUint32(nil, data)) // Make
	t = entry(t, 0x0112, 3, 1, be.AppendUint16(nil, o))                          // Orientation
	t = entry(t, 0x8825, 4, 1, be.AppendUint32(nil, gpsIFD))                     // GPSInfo
	t = be.AppendUint32(t, 0)
	t = be.AppendUint16(t, 2)
	t = entry(t, 0x0001, 2, 2, []byte("N\x00"))                                    // GPSLatitudeRef
	t = entry(t, 0x0002, 5, 3, be.AppendUint32(nil, uint32(data+len(cameraMake)))) // GPSLatitude
	t = be.AppendUint32(t, 0)
	t = append(t, cameraMake...)
	t = append(t, gpsLatitude...)
	payload := append([]byte("Exif\x00\x00"), t...)
	return append([]byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}, payload...)
}

// photo returns a w×h image with some texture, so that it compresses as a
// photo does rather than to nothing.
func photo(w, h int, alpha uint8) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x ^ y), uint8(x * 3), uint8(y * 5), alpha})
		}
	}
	return m
}

// cameraJPEG is a w×h JPEG (as stored, before its orientation) with the
// Exif segment of a phone, orientation o.
func cameraJPEG(t *testing.T, w, h int, o uint16) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, photo(w, h, 255), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	jpg := b.Bytes()
	return append(append(append([]byte{}, jpg[:2]...), cameraExif(o)...), jpg[2:]...)
}

func encodePNG(t *testing.T, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hugePNG is the start of a PNG whose header declares w×h pixels, followed
// by bytes that are no image data.
func hugePNG(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32([]byte("IHDR"), w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA
	b := []byte("\x89PNG\r\n\x1a\n")
	b = binary.BigEndian.AppendUint32(b, 13)
	b = append(b, ihdr...)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr))
	return append(b, payload(64<<10)...)
}

// upload sends data whole through m and waits for its completion.
func (f *fixture) upload(m *Manager, name string, data []byte) (Grant, File) {
	f.t.Helper()
	sink := newSink()
	g := f.open(m, sink, OpenRequest{Name: name, Size: int64(len(data)), SHA256: sum(data)})
	send(f.t, m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	return g, sink.waitCompleted(f.t, g.Upload)
}

// checkThumb checks file's thumbnail: stored, of its type, within 640
// pixels, in the shape of the image as displayed.
func (f *fixture) checkThumb(file File, ctype string) image.Config {
	f.t.Helper()
	if file.ThumbKey == "" || file.ThumbType != ctype {
		f.t.Fatalf("thumbnail %q of type %q, want one of type %s", file.ThumbKey, file.ThumbType, ctype)
	}
	if dir := file.ThumbKey[:strings.LastIndexByte(file.ThumbKey, '/')]; !strings.HasPrefix(file.Key, dir+"/") {
		f.t.Errorf("thumbnail %s is not next to the file %s", file.ThumbKey, file.Key)
	}
	data, info, ok := f.store.object(file.ThumbKey)
	if !ok {
		f.t.Fatalf("no thumbnail object at %s", file.ThumbKey)
	}
	if info.Meta.ContentType != ctype {
		f.t.Errorf("thumbnail stored as %q, want %s", info.Meta.ContentType, ctype)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || "image/"+format != ctype {
		f.t.Fatalf("thumbnail decodes as %q: %v", format, err)
	}
	if max(cfg.Width, cfg.Height) > 640 || (cfg.Width > cfg.Height) != (file.Width > file.Height) {
		f.t.Errorf("thumbnail %d×%d for an image of %d×%d", cfg.Width, cfg.Height, file.Width, file.Height)
	}
	return cfg
}

func TestJPEGStrippedAndThumbnailed(t *testing.T) {
	f := newFixture(t, nil)
	sent := cameraJPEG(t, 1200, 800, 6) // taken upright: shown 800×1200
	g, file := f.upload(f.m, "IMG_0001.jpg", sent)

	stored, _, ok := f.store.object(file.Key)
	if !ok {
		t.Fatalf("no object at %s", file.Key)
	}
	for what, b := range map[string][]byte{"GPS latitude": gpsLatitude, "camera make": []byte(cameraMake)} {
		if bytes.Contains(stored, b) {
			t.Errorf("the stored photo still holds its %s", what)
		}
	}
	if !bytes.Contains(stored, []byte("Exif\x00\x00")) {
		t.Error("the stored photo lost the Exif segment that keeps its orientation")
	}
	if cfg, err := jpeg.DecodeConfig(bytes.NewReader(stored)); err != nil || cfg.Width != 1200 || cfg.Height != 800 {
		t.Errorf("the stored photo decodes as %+v, %v", cfg, err)
	}
	// SHA256 and Size are the stored bytes', in the record and the
	// object's metadata; the sent ones are kept beside them.
	f.checkStored(file, stored, "image/jpeg")
	if file.SentSHA256 != sum(sent) || file.SentSize != int64(len(sent)) || file.SHA256 == sum(sent) {
		t.Errorf("sent %d bytes %s, record says sent %d %s, stored %s", len(sent), sum(sent), file.SentSize, file.SentSHA256, file.SHA256)
	}
	if keys := f.store.keys("rooms/"); len(keys) != 2 {
		t.Errorf("objects %v, want the stripped photo and its thumbnail only (the original deleted)", keys)
	}

	if file.Width != 800 || file.Height != 1200 {
		t.Errorf("displayed size %d×%d, want 800×1200 (orientation 6)", file.Width, file.Height)
	}
	if cfg := f.checkThumb(file, "image/jpeg"); cfg.Width != 427 || cfg.Height != 640 {
		t.Errorf("thumbnail %d×%d, want 427×640", cfg.Width, cfg.Height)
	}
	if a := f.announcedFiles(); len(a) != 1 || a[0] != file {
		t.Errorf("announced %+v, want %+v", a, file)
	}
	// The client's digest is of what it sent: upload.finish still agrees.
	if err := f.m.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: sum(sent)}); err != nil {
		t.Errorf("Finish with the sent digest: %v", err)
	}
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: sum(stored)}), CodeChecksumMismatch)
}

func TestKeepEXIF(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.KeepEXIF = true })
	sent := cameraJPEG(t, 300, 200, 6)
	_, file := f.upload(f.m, "keep.jpg", sent)
	f.checkStored(file, sent, "image/jpeg")
	if file.SentSHA256 != "" || file.SentSize != 0 {
		t.Errorf("nothing was stripped, yet the record says sent %d, %s", file.SentSize, file.SentSHA256)
	}
	// Smaller than a thumbnail: it keeps its size, upright.
	if cfg := f.checkThumb(file, "image/jpeg"); cfg.Width != 200 || cfg.Height != 300 {
		t.Errorf("thumbnail %d×%d, want 200×300", cfg.Width, cfg.Height)
	}
}

func TestThumbnails(t *testing.T) {
	var opaque bytes.Buffer
	_ = jpeg.Encode(&opaque, photo(2000, 1000, 255), nil)
	for _, tc := range []struct {
		name string
		data []byte
		// thumb is the thumbnail's type, "" for none.
		thumb         string
		width, height int
	}{
		{"translucent.png", encodePNG(t, photo(1500, 900, 128)), "image/png", 1500, 900},
		{"opaque.png", encodePNG(t, photo(700, 900, 255)), "image/jpeg", 700, 900},
		{"plain.jpg", opaque.Bytes(), "image/jpeg", 2000, 1000},
		{"data.bin", payload(100_000), "", 0, 0},
		{"huge.png", hugePNG(100_000, 100_000), "", 0, 0},
		{"broken.png", hugePNG(800, 600), "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			_, file := f.upload(f.m, tc.name, tc.data)
			f.checkStored(file, tc.data, file.Type)
			if file.Width != tc.width || file.Height != tc.height {
				t.Errorf("size %d×%d, want %d×%d", file.Width, file.Height, tc.width, tc.height)
			}
			if tc.thumb == "" {
				if file.ThumbKey != "" || file.ThumbType != "" {
					t.Errorf("thumbnail %s (%s) made", file.ThumbKey, file.ThumbType)
				}
				if keys := f.store.keys("rooms/"); len(keys) != 1 {
					t.Errorf("objects %v, want the file alone", keys)
				}
				return
			}
			f.checkThumb(file, tc.thumb)
			if !strings.HasSuffix(file.ThumbKey, map[string]string{"image/png": ".png", "image/jpeg": ".jpg"}[tc.thumb]) {
				t.Errorf("thumbnail key %s for a %s", file.ThumbKey, tc.thumb)
			}
		})
	}
}

func TestThumbnailsOff(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.NoThumbnails = true })
	sent := cameraJPEG(t, 900, 600, 1)
	_, file := f.upload(f.m, "a.jpg", sent)
	if file.ThumbKey != "" || file.Width != 0 {
		t.Errorf("thumbnail %q, size %d×%d with thumbnails off", file.ThumbKey, file.Width, file.Height)
	}
	if file.SentSHA256 != sum(sent) { // stripping is on all the same
		t.Errorf("sent digest %q, want %s", file.SentSHA256, sum(sent))
	}
}

// A store that stops answering while a thumbnail is made, and ignores its
// deadlines too, holds up the announcement no longer than PreviewTimeout;
// the thumbnail holds its turn meanwhile, so the next image goes without one
// too, and once the store answers the next one has its thumbnail again.
func TestThumbnailDeadline(t *testing.T) {
	for _, op := range []string{"get", "put"} {
		t.Run(op, func(t *testing.T) {
			const wait = 500 * time.Millisecond
			f := newFixture(t, func(c *Config) { c.PreviewTimeout = wait })
			unhang := make(chan struct{})
			f.store.set(func(s *memStore) {
				s.unhang = unhang
				s.hang = func(o, key string) bool {
					return o == op && strings.Contains(key, "hung.png")
				}
			})
			released := false
			release := func() {
				if !released {
					released = true
					close(unhang)
				}
			}
			t.Cleanup(release) // before the manager shuts down
			img := encodePNG(t, photo(200, 150, 128))

			start := time.Now()
			_, file := f.upload(f.m, "hung.png", img)
			if took := time.Since(start); took > wait+2*time.Second {
				t.Errorf("completion took %v with a thumbnail deadline of %v", took, wait)
			}
			if file.ThumbKey != "" || file.Width != 0 {
				t.Errorf("thumbnail %q, %d×%d from a hung store", file.ThumbKey, file.Width, file.Height)
			}
			if a := f.announcedFiles(); len(a) != 1 || a[0].ID != file.ID {
				t.Fatalf("announced %+v", a)
			}

			_, file = f.upload(f.m, "queued.png", img)
			if file.ThumbKey != "" {
				t.Errorf("a thumbnail was made while the hung one held the only turn")
			}
			release()
			// The hung thumbnail gives its turn back once its store call
			// returns (its context ended long ago).
			for deadline := time.Now().Add(5 * time.Second); file.ThumbKey == ""; {
				if time.Now().After(deadline) {
					t.Fatal("no thumbnail once the store answers again")
				}
				_, file = f.upload(f.m, "after.png", img)
			}
			f.checkThumb(file, "image/png")
		})
	}
}

// The record is the truth: a completion cut short before or after it,
// then resumed by another process, leaves the stripped photo, its
// record, and not the original.
func TestStripCrashSafe(t *testing.T) {
	for _, tc := range []struct {
		name string
		// cut makes the store fail where the completion is cut short, and
		// reached says when it got there.
		cut     func(s *memStore)
		reached func(s *memStore) bool
	}{
		{"before the record",
			func(s *memStore) { s.failPrefix = filesPrefix },
			func(s *memStore) bool { return len(s.keys("rooms/")) == 3 }}, // original, stripped copy, thumbnail
		{"after the record",
			func(s *memStore) { s.failDeletePrefix = "rooms/" },
			func(s *memStore) bool { return len(s.keys(filesPrefix)) == 1 }},
		{"after the original is deleted",
			func(s *memStore) {
				s.refuse = func(key string, data []byte) bool {
					return strings.HasPrefix(key, uploadsPrefix) && bytes.Contains(data, []byte(`"status":"complete"`))
				}
			},
			func(s *memStore) bool { return len(s.keys(filesPrefix)) == 1 && len(s.keys("rooms/")) == 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			sent := cameraJPEG(t, 1000, 700, 6)
			f.store.set(tc.cut)
			sink := newSink()
			g := f.open(f.m, sink, OpenRequest{Name: "crash.jpg", Size: int64(len(sent)), SHA256: sum(sent)})
			send(t, f.m, sink, g, "alice", sent, 0, int64(len(sent)), 1<<20)
			sink.wait(t, "the completion to be cut", func() bool { return tc.reached(f.store) })
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := f.m.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown with storage failing: %v", err)
			}
			if n := len(f.announcedFiles()); n != 0 {
				t.Fatalf("%d files announced before the completion was done", n)
			}
			f.store.set(func(s *memStore) { s.failPrefix, s.failDeletePrefix, s.refuse = "", "", nil })

			m2 := f.manager(nil)
			sink2 := newSink()
			f.open(m2, sink2, OpenRequest{Resume: g.Upload})
			file := sink2.waitCompleted(t, g.Upload)
			stored, _, _ := f.store.object(file.Key)
			f.checkStored(file, stored, "image/jpeg")
			if bytes.Contains(stored, gpsLatitude) || file.SentSHA256 != sum(sent) {
				t.Errorf("stored photo not stripped (sent digest %q)", file.SentSHA256)
			}
			if keys := f.store.keys("rooms/"); len(keys) != 2 || keys[0] != file.Key && keys[1] != file.Key {
				t.Errorf("objects %v, want %s and its thumbnail", keys, file.Key)
			}
			f.checkThumb(file, "image/jpeg")
			if a := f.announcedFiles(); len(a) != 1 || a[0] != file {
				t.Errorf("announced %+v, want %+v once", a, file)
			}
		})
	}
}

// A thumbnail the store refuses is not fatal: the file is announced with
// its size, without a thumbnail.
func TestThumbnailNotStored(t *testing.T) {
	f := newFixture(t, nil)
	f.store.set(func(s *memStore) {
		s.refuse = func(key string, _ []byte) bool { return strings.Contains(key, "/thumb-") }
	})
	img := encodePNG(t, photo(900, 300, 128))
	_, file := f.upload(f.m, "wide.png", img)
	f.checkStored(file, img, "image/png")
	if file.ThumbKey != "" || file.Width != 900 || file.Height != 300 {
		t.Errorf("thumbnail %q, %d×%d; want none, 900×300", file.ThumbKey, file.Width, file.Height)
	}
}
