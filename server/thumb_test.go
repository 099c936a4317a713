package server_test

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// whereabouts is a comment a camera app might leave in a photo, which the
// server strips.
const whereabouts = "taken at 48.8582N 2.2945E by FerryCam"

// phonePhoto is a w×h JPEG (as stored) turned by orientation 6, as a phone
// held upright writes it, with a comment giving away where it was taken.
func phonePhoto(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	tiff := []byte("MM\x00*\x00\x00\x00\x08\x00\x01")             // IFD0 at 8, one entry
	tiff = append(tiff, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0) // Orientation = 6
	tiff = be.AppendUint32(tiff, 0)                               // no next IFD
	seg := func(marker byte, payload []byte) []byte {
		return append([]byte{0xFF, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}, payload...)
	}
	jpg := b.Bytes()
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg(0xE1, append([]byte("Exif\x00\x00"), tiff...))...)
	out = append(out, seg(0xFE, []byte(whereabouts))...)
	return append(out, jpg[2:]...)
}

// withQuery returns link's path with the query of another link.
func withQuery(link, other string) string {
	p, _, _ := strings.Cut(link, "?")
	_, q, _ := strings.Cut(other, "?")
	return p + "?" + q
}

func TestThumbnailOverTheWire(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{})
	up := dial(t, e.WS+"?name=up")
	watcher := dial(t, e.WS+"?name=watcher")
	stranger := dial(t, e.WS+"?name=stranger")
	for _, p := range []*peer{up, watcher} {
		p.mustAck(frame{"t": "join", "room": "photos"})
	}
	sent := phonePhoto(t, 1600, 1200)
	done, errf := up.upload("photos", sent, uploadOpts{name: "tower.jpg", typ: "image/jpeg", sha: sha(sent)})
	if errf != nil {
		t.Fatal(errf)
	}
	file := done["file"].(map[string]any)
	ev := watcher.readType("event")
	announced := ev["data"].(map[string]any)
	link := up.mustAck(frame{"t": "file.link", "file": file["id"]})["data"].(map[string]any)
	for what, f := range map[string]map[string]any{"upload.done": file, "file event": announced, "file.link": link} {
		thumb, _ := f["thumb"].(string)
		if !strings.HasPrefix(thumb, "/files/"+file["id"].(string)+"/thumb/") || !strings.Contains(thumb, "sig=") {
			t.Errorf("%s: thumb %q", what, thumb)
		}
		if f["width"] != 1200.0 || f["height"] != 1600.0 {
			t.Errorf("%s: %v×%v, want the upright 1200×1600", what, f["width"], f["height"])
		}
		if f["sent_sha256"] != sha(sent) || f["sent_size"] != float64(len(sent)) {
			t.Errorf("%s: sent %v, %v; want what was sent", what, f["sent_sha256"], f["sent_size"])
		}
	}

	// The original, as stored: without its comment, matching its sha256.
	resp, stored := e.download(t, file["url"].(string), nil)
	if resp.StatusCode != http.StatusOK || sha(stored) != file["sha256"] || int64(len(stored)) != int64(file["size"].(float64)) {
		t.Fatalf("original: %d, %d bytes, sha256 %s (file says %v)", resp.StatusCode, len(stored), sha(stored), file["sha256"])
	}
	if bytes.Contains(stored, []byte(whereabouts)) || sha(stored) == sha(sent) {
		t.Error("the stored photo still tells where it was taken")
	}

	thumb := file["thumb"].(string)
	resp, body := e.download(t, thumb, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("thumbnail: %d %s", resp.StatusCode, body)
	}
	if ct, cd := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"); ct != "image/jpeg" || !strings.HasPrefix(cd, "inline") {
		t.Errorf("thumbnail served as %q, %q", ct, cd)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(body))
	if err != nil || cfg.Width != 480 || cfg.Height != 640 {
		t.Errorf("thumbnail %d×%d (%v), want 480×640", cfg.Width, cfg.Height, err)
	}

	// Each link opens what it was signed for, and nothing else.
	get := func(path string, h http.Header) int {
		resp, _ := e.download(t, path, h)
		return resp.StatusCode
	}
	original := file["url"].(string)
	for _, tc := range []struct {
		name string
		path string
		want int
	}{
		{"thumbnail path, file's signature", withQuery(thumb, original), http.StatusForbidden},
		{"file path, thumbnail's signature", withQuery(original, thumb), http.StatusForbidden},
		{"altered thumbnail signature", strings.Replace(thumb, "sig=", "sig=0", 1), http.StatusForbidden},
		{"altered file signature", strings.Replace(original, "sig=", "sig=0", 1), http.StatusForbidden},
		{"thumbnail without a signature", strings.Split(thumb, "?")[0], http.StatusUnauthorized},
		{"thumbnail of an unknown file", "/files/f_nobody0000000000/thumb/x.jpg?" + strings.Split(thumb, "?")[1], http.StatusForbidden},
	} {
		if got := get(tc.path, nil); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// With a token instead of a link: members only, as for the file.
	bearer := func(p *peer) http.Header { return http.Header{"Authorization": {"Bearer " + p.welcome.Token}} }
	bare := strings.Split(thumb, "?")[0]
	if got := get(bare, bearer(watcher)); got != http.StatusOK {
		t.Errorf("a member's token: %d", got)
	}
	if got, file := get(bare, bearer(stranger)), get(strings.Split(original, "?")[0], bearer(stranger)); got != http.StatusNotFound || file != got {
		t.Errorf("a stranger's token: thumbnail %d, file %d; want 404 for both", got, file)
	}

	// A file without a thumbnail has no thumb, and its thumbnail path
	// answers as an unknown file.
	data := randomBytes(10_000)
	done, errf = up.upload("photos", data, uploadOpts{name: "notes.bin"})
	if errf != nil {
		t.Fatal(errf)
	}
	plain := done["file"].(map[string]any)
	if _, ok := plain["thumb"]; ok || plain["width"] != nil || plain["sent_sha256"] != nil {
		t.Errorf("file without a preview: %v", plain)
	}
	if got := get("/files/"+url.PathEscape(plain["id"].(string))+"/thumb/x.jpg", bearer(up)); got != http.StatusNotFound {
		t.Errorf("thumbnail of a file without one: %d", got)
	}
}
