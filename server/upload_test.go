package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer"
)

// fileEnv is a server with uploads over a real store.
type fileEnv struct{ *ferrytest.Ferry }

// stores lists the backends every upload test runs against: disk always,
// MinIO when it is there (and CI requires it).
func stores(t *testing.T) map[string]func(t *testing.T) storage.Store {
	return map[string]func(t *testing.T) storage.Store{
		"disk":  func(t *testing.T) storage.Store { return ferrytest.DiskStore(t) },
		"minio": func(t *testing.T) storage.Store { return ferrytest.MinIOStore(t) },
	}
}

func newFileEnv(t *testing.T, store storage.Store, tcfg transfer.Config, scfg server.Config) *fileEnv {
	t.Helper()
	return &fileEnv{ferrytest.Start(t, store, tcfg, scfg)}
}

// newTLSFileEnv is newFileEnv over TLS; dial trusts its certificate.
func newTLSFileEnv(t *testing.T, store storage.Store, tcfg transfer.Config, scfg server.Config) *fileEnv {
	t.Helper()
	e := &fileEnv{ferrytest.StartTLS(t, store, tcfg, scfg)}
	trustTLS(e.WS, e.TLS)
	return e
}

type uploadOpts struct {
	name, typ string
	base64    bool
	chunk     int
	sha       string
	resume    string
	// cutAfter, when > 0, stops sending once that many bytes were sent.
	cutAfter int64
}

// upload sends data with the protocol as a client would and returns the
// upload.done frame, or the first error frame about it.
func (p *peer) upload(room string, data []byte, o uploadOpts) (done frame, errf frame) {
	p.t.Helper()
	if o.name == "" {
		o.name = "file.bin"
	}
	if o.chunk == 0 {
		o.chunk = 64 << 10
	}
	req := frame{"t": "upload.open", "room": room, "name": o.name, "size": len(data), "type": o.typ, "chunk_size": o.chunk}
	if o.sha != "" {
		req["sha256"] = o.sha
	}
	durable := int64(0)
	if o.resume != "" {
		req["resume"] = o.resume
		// The grant's offset may run ahead of what is stored: the window
		// counts from the durable offset.
		st := p.mustAck(frame{"t": "upload.status", "upload": o.resume})["data"].(map[string]any)
		durable = int64(st["durable"].(float64))
	}
	r := p.request(req)
	if r["t"] == "error" {
		return nil, r
	}
	g := r["data"].(map[string]any)
	id := g["upload"].(string)
	off := int64(g["offset"].(float64))
	window := int64(g["window"].(float64))
	chunk := int64(g["chunk_size"].(float64))
	sent := off
	for {
		for sent < int64(len(data)) && sent-durable+chunk <= window && (o.cutAfter == 0 || sent < o.cutAfter) {
			end := min(sent+chunk, int64(len(data)))
			p.sendChunk(id, sent, data[sent:end], o.base64)
			sent = end
		}
		if o.cutAfter > 0 && sent >= o.cutAfter {
			return frame{"upload": id, "cut": sent}, nil
		}
		f := p.next(func(f frame) bool { return f["upload"] == id })
		switch {
		case f["t"] == "upload.progress" && f["upload"] == id:
			durable = int64(f["offset"].(float64))
		case f["t"] == "upload.done" && f["upload"] == id:
			return f, nil
		case f["t"] == "error" && f["upload"] == id:
			switch f["code"] {
			case transfer.CodeStorageUnavailable:
				p.storageErrors++
				continue // the server keeps the data and retries
			case transfer.CodeWindowExceeded:
				sent = int64(f["offset"].(float64))
				continue // wait for progress
			}
			return nil, f
		default:
			p.backlog = append(p.backlog, f)
		}
	}
}

// next returns the first frame, from the backlog or the wire, that match
// accepts; other frames stay in the backlog in order.
func (p *peer) next(match func(frame) bool) frame {
	p.t.Helper()
	for i, f := range p.backlog {
		if match(f) {
			p.backlog = append(p.backlog[:i:i], p.backlog[i+1:]...)
			return f
		}
	}
	return p.readWire()
}

func (p *peer) sendChunk(id string, off int64, b []byte, b64 bool) {
	p.t.Helper()
	if b64 {
		p.send(frame{"t": "upload.chunk", "upload": id, "offset": off, "data": base64.StdEncoding.EncodeToString(b)})
		return
	}
	msg := protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: id, Offset: off})
	p.sendRaw(websocket.BinaryMessage, append(msg, b...))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// download fetches a file's URL from the announcement, with extra headers.
func (e *fileEnv) download(t *testing.T, url string, h http.Header) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.URL+url, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := e.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestUploadSizesAndEncodings runs on both socket paths: plain TCP and TLS
// (see server/socket.go), the download over HTTPS too.
func TestUploadSizesAndEncodings(t *testing.T) {
	for name, newStore := range stores(t) {
		for _, overTLS := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/tls=%v", name, overTLS), func(t *testing.T) {
				start := newFileEnv
				if overTLS {
					start = newTLSFileEnv
				}
				testUploadSizesAndEncodings(t, start(t, newStore(t), transfer.Config{PartSize: storage.MinPartSize}, server.Config{}))
			})
		}
	}
}

func testUploadSizesAndEncodings(t *testing.T, e *fileEnv) {
	up := dial(t, e.WS+"?name=uploader")
	watcher := dial(t, e.WS+"?name=watcher")
	up.mustAck(frame{"t": "join", "room": "share"})
	watcher.mustAck(frame{"t": "join", "room": "share"})
	for _, size := range []int{0, 1, 100_000 + 7, 2*storage.MinPartSize + 12345} {
		for _, b64 := range []bool{false, true} {
			data := randomBytes(size)
			done, errf := up.upload("share", data, uploadOpts{name: fmt.Sprintf("f%d.bin", size), base64: b64, sha: sha(data)})
			if errf != nil {
				t.Fatalf("size %d base64 %v: %v", size, b64, errf)
			}
			f := done["file"].(map[string]any)
			if f["size"] != float64(size) || f["sha256"] != sha(data) || f["room"] != "share" || f["user_name"] != "uploader" {
				t.Fatalf("file %v", f)
			}
			if _, leaked := f["key"]; leaked {
				t.Fatalf("storage key leaked to the client: %v", f)
			}
			// The room hears about it, as an ordinary event.
			ev := watcher.readType("event")
			if ev["event"] != "file" || ev["data"].(map[string]any)["id"] != f["id"] || ev["receipt"] != true {
				t.Fatalf("announcement %v", ev)
			}
			resp, got := e.download(t, f["url"].(string), nil)
			if resp.StatusCode != 200 || !bytes.Equal(got, data) {
				t.Fatalf("download: status %d, %d bytes (want %d)", resp.StatusCode, len(got), size)
			}
		}
	}
}

func TestUploadBadInput(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{MaxFileSize: 1 << 20, MaxUploads: 2}, server.Config{})
	p := dial(t, e.WS)
	other := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "r"})
	other.mustAck(frame{"t": "join", "room": "r"})

	for _, tc := range []struct {
		name string
		req  frame
		code string
	}{
		{"slash", frame{"name": "a/b.txt"}, transfer.CodeBadName},
		{"backslash", frame{"name": `a\b.txt`}, transfer.CodeBadName},
		{"dotdot", frame{"name": ".."}, transfer.CodeBadName},
		{"control", frame{"name": "a\x01b"}, transfer.CodeBadName},
		{"long", frame{"name": strings.Repeat("n", 500)}, transfer.CodeBadName},
		{"too large", frame{"size": 2 << 20}, transfer.CodeTooLarge},
		{"negative", frame{"size": -1}, transfer.CodeBadRequest},
		{"bad sha", frame{"sha256": "xyz"}, transfer.CodeBadRequest},
		{"not member", frame{"room": "elsewhere"}, protocol.CodeNotMember},
		{"unknown resume", frame{"resume": "up_nothing", "room": ""}, transfer.CodeUnknownUpload},
	} {
		req := frame{"t": "upload.open", "room": "r", "name": "ok.txt", "size": 10}
		for k, v := range tc.req {
			req[k] = v
		}
		r := p.mustError(req, tc.code)
		if msg := r["message"].(string); msg == "" {
			t.Fatalf("%s: no message", tc.name)
		}
	}

	data := randomBytes(100_000)
	g := p.mustAck(frame{"t": "upload.open", "room": "r", "name": "a.bin", "size": len(data)})["data"].(map[string]any)
	id := g["upload"].(string)
	expectErr := func(who *peer, code string, offset float64) {
		t.Helper()
		f := who.await(func(f frame) bool { return f["t"] == "error" })
		if f["t"] != "error" || f["code"] != code || f["upload"] != id {
			t.Fatalf("got %v, want %s", f, code)
		}
		if offset >= 0 && f["offset"] != offset {
			t.Fatalf("offset %v, want %v", f["offset"], offset)
		}
	}
	p.sendChunk(id, 5, data[5:10], false) // wrong offset: told where to continue
	expectErr(p, transfer.CodeBadOffset, 0)
	p.sendChunk(id, 0, data[:1000], false)
	p.sendChunk(id, 0, data[:1000], false) // again at 0: now 1000 is expected
	expectErr(p, transfer.CodeBadOffset, 1000)
	p.send(frame{"t": "upload.chunk", "upload": id, "offset": 1000, "data": "!!not base64!!"})
	expectErr(p, protocol.CodeBadChunk, -1)
	other.sendChunk(id, 1000, data[1000:2000], false) // someone else's upload
	expectErr(other, transfer.CodeForbidden, -1)
	p.sendChunk("up_unknown", 0, data[:10], false)
	f := p.next(func(f frame) bool { return f["t"] == "error" })
	if f["code"] != transfer.CodeUnknownUpload {
		t.Fatalf("unknown upload: %v", f)
	}
	p.sendChunk(id, 1000, append(append([]byte{}, data[1000:]...), 1, 2, 3), false) // past the size
	expectErr(p, transfer.CodeBeyondSize, 1000)
	p.sendRaw(websocket.BinaryMessage, []byte{0x07, 1, 'x'}) // not a chunk header
	if f := p.next(func(f frame) bool { return f["t"] == "error" }); f["code"] != protocol.CodeBadFrame {
		t.Fatalf("bad header: %v", f)
	}
	// After all that, the upload is intact and completes.
	done, errf := p.upload("r", data, uploadOpts{resume: id, name: "a.bin"})
	if errf != nil {
		t.Fatal(errf)
	}
	if got := done["file"].(map[string]any)["sha256"]; got != sha(data) {
		t.Fatalf("sha %v", got)
	}
	goodID := done["file"].(map[string]any)["id"]

	// A wrong SHA-256: refused at the end, nothing announced.
	_, errf = p.upload("r", data, uploadOpts{sha: sha([]byte("other"))})
	if errf == nil || errf["code"] != transfer.CodeChecksumMismatch {
		t.Fatalf("checksum: %v", errf)
	}
	// Too many uploads at once on one connection.
	for i := 0; i < 2; i++ {
		p.mustAck(frame{"t": "upload.open", "room": "r", "name": fmt.Sprintf("p%d", i), "size": 10})
	}
	p.mustError(frame{"t": "upload.open", "room": "r", "name": "p3", "size": 10}, transfer.CodeTooManyUploads)
	// The connection still chats.
	p.mustAck(frame{"t": "emit", "room": "r", "event": "chat", "data": "still here"})
	for {
		ev := other.next(func(f frame) bool { return f["t"] == "event" })
		if ev["event"] == "file" && ev["data"].(map[string]any)["id"] != goodID {
			t.Fatalf("a refused upload was announced: %v", ev)
		}
		if ev["event"] == "chat" {
			break
		}
	}
}

func TestUploadTypePolicy(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "r"})
	elf := append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0}, randomBytes(4000)...)
	png := append([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'}, randomBytes(4000)...)
	for _, tc := range []struct {
		name, typ string
		data      []byte
		code      string
		stored    string
	}{
		{"cat.jpg", "image/jpeg", elf, transfer.CodeTypeMismatch, ""},
		{"tool", "", elf, transfer.CodeTypeRefused, ""},
		{"run.sh", "text/plain", []byte("#!/bin/sh\nrm -rf /\n"), transfer.CodeTypeRefused, ""},
		{"cat.jpg", "image/jpeg", png, transfer.CodeTypeMismatch, ""},
		{"cat.png", "image/png", png, "", "image/png"},
		{"cat", "", png, "", "image/png"},
		{"blob.dat", "", randomBytes(3000), "", "application/octet-stream"},
	} {
		done, errf := p.upload("r", tc.data, uploadOpts{name: tc.name, typ: tc.typ})
		if tc.code != "" {
			if errf == nil || errf["code"] != tc.code {
				t.Fatalf("%s as %s: got %v %v, want %s", tc.name, tc.typ, done, errf, tc.code)
			}
			continue
		}
		if errf != nil {
			t.Fatalf("%s: %v", tc.name, errf)
		}
		if got := done["file"].(map[string]any)["type"]; got != tc.stored {
			t.Fatalf("%s stored as %v, want %s", tc.name, got, tc.stored)
		}
	}
}

func TestDownloadRangeAndAccess(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "r"})
	outsider := dial(t, e.WS)
	data := randomBytes(300_000)
	done, errf := p.upload("r", data, uploadOpts{name: "notes.bin"})
	if errf != nil {
		t.Fatal(errf)
	}
	f := done["file"].(map[string]any)
	url := f["url"].(string)
	resp, got := e.download(t, url, http.Header{"Range": {"bytes=1000-1999"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[1000:2000]) {
		t.Fatalf("range: %d, %d bytes", resp.StatusCode, len(got))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
		t.Fatalf("disposition %q", cd)
	}
	bare := "/files/" + f["id"].(string) + "/notes.bin"
	// A member's token is enough; a non-member's is not (answered as for an
	// unknown id); nothing is not.
	if resp, _ := e.download(t, bare, http.Header{"Authorization": {"Bearer " + p.welcome.Token}}); resp.StatusCode != 200 {
		t.Fatalf("member: %d", resp.StatusCode)
	}
	if resp, _ := e.download(t, bare, http.Header{"Authorization": {"Bearer " + outsider.welcome.Token}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("outsider: %d", resp.StatusCode)
	}
	if resp, _ := e.download(t, bare, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", resp.StatusCode)
	}
	if resp, _ := e.download(t, url+"x", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged signature: %d", resp.StatusCode)
	}
	// A fresh link is only for members.
	outsider.mustError(frame{"t": "file.link", "file": f["id"]}, protocol.CodeNotFound)
	link := p.mustAck(frame{"t": "file.link", "file": f["id"]})["data"].(map[string]any)
	if resp, got := e.download(t, link["url"].(string), nil); resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("fresh link: %d", resp.StatusCode)
	}
}

// Several uploads interleaved on one connection, with chat in between, all
// complete intact.
func TestParallelUploads(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			e := newFileEnv(t, newStore(t), transfer.Config{PartSize: storage.MinPartSize}, server.Config{})
			p := dial(t, e.WS)
			p.mustAck(frame{"t": "join", "room": "r"})
			type up struct {
				data             []byte
				id               string
				sent, durable, w int64
				done             bool
			}
			var ups []*up
			for i := 0; i < 3; i++ {
				u := &up{data: randomBytes(3*storage.MinPartSize/2 + i*7777)}
				g := p.mustAck(frame{"t": "upload.open", "room": "r", "name": fmt.Sprintf("p%d.bin", i), "size": len(u.data), "chunk_size": 128 << 10})["data"].(map[string]any)
				u.id, u.w = g["upload"].(string), int64(g["window"].(float64))
				ups = append(ups, u)
			}
			remaining := len(ups)
			chats := 0
			for remaining > 0 {
				sent := false
				for _, u := range ups {
					// One chunk each in turn, within each window.
					if u.sent < int64(len(u.data)) && u.sent-u.durable+(128<<10) <= u.w {
						end := min(u.sent+128<<10, int64(len(u.data)))
						p.sendChunk(u.id, u.sent, u.data[u.sent:end], false)
						u.sent = end
						sent = true
					}
				}
				// Chat goes on between the chunks; its ack is the frame
				// read next. With the windows full, the frames to wait
				// for are the uploads' progress.
				if sent {
					p.send(frame{"t": "emit", "room": "r", "event": "chat", "data": chats})
					chats++
				}
				f := p.readWire()
				for _, u := range ups {
					if f["upload"] != u.id {
						continue
					}
					switch f["t"] {
					case "upload.progress":
						u.durable = int64(f["offset"].(float64))
					case "upload.done":
						if f["file"].(map[string]any)["sha256"] != sha(u.data) {
							t.Fatalf("upload %s: wrong sha", u.id)
						}
						u.done = true
						remaining--
					case "error":
						t.Fatalf("upload %s: %v", u.id, f)
					}
				}
			}
		})
	}
}

// openCounter counts the objects of a store that are open.
type openCounter struct {
	storage.Store
	open atomic.Int64
}

func (s *openCounter) Get(ctx context.Context, key string) (storage.Object, error) {
	obj, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	s.open.Add(1)
	return &countedObject{Object: obj, open: &s.open}, nil
}

type countedObject struct {
	storage.Object
	open *atomic.Int64
	once sync.Once
}

func (o *countedObject) Close() error {
	o.once.Do(func() { o.open.Add(-1) })
	return o.Object.Close()
}

// A download asking for many ranges is refused before any storage request;
// one whose client stops reading is cut off after DownloadIdle, and gives
// its storage object back.
func TestDownloadLimits(t *testing.T) {
	store := &openCounter{Store: stores(t)["disk"](t)}
	e := newFileEnv(t, store, transfer.Config{}, server.Config{DownloadIdle: 300 * time.Millisecond})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "r"})
	data := randomBytes(16 << 20)
	done, errf := p.upload("r", data, uploadOpts{name: "big.bin", chunk: 1 << 20})
	if errf != nil {
		t.Fatal(errf)
	}
	link := done["file"].(map[string]any)["url"].(string)
	ranges := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%d-%d", i*100, i*100+9)
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	if resp, _ := e.download(t, link, http.Header{"Range": {ranges(8)}}); resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("8 ranges: %d", resp.StatusCode)
	}
	if resp, body := e.download(t, link, http.Header{"Range": {ranges(2000)}}); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("2000 ranges: %d %q", resp.StatusCode, body)
	}

	// Clients that ask and do not read.
	for range 5 {
		nc, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", link)
	}
	deadline := time.Now().Add(5 * time.Second)
	for store.open.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d downloads whose clients stopped reading still hold their objects", store.open.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// /metrics has the counters, the latency histograms and the Go runtime's
// and the process's series; frame types clients make up are not labels.
func TestMetricsHistograms(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{PartSize: storage.MinPartSize}, server.Config{})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "r"})
	for range 40 {
		p.mustAck(frame{"t": "emit", "room": "r", "event": "e", "data": 1})
	}
	p.request(frame{"t": "made-up-type"})
	data := randomBytes(2*storage.MinPartSize + 1)
	if _, errf := p.upload("r", data, uploadOpts{chunk: 1 << 20}); errf != nil {
		t.Fatal(errf)
	}
	resp, body := e.download(t, "/metrics", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`ferry_request_seconds_bucket{type="emit",le="0.001"}`,
		`ferry_request_seconds_count{type="upload.open"} 1`,
		`ferry_request_seconds_count{type="other"} 1`,
		`ferry_errors_total{code="unknown_type"} 1`,
		"ferry_delivery_wait_seconds_count",
		"ferry_upload_part_store_seconds_count 3",
		"ferry_connections 1",
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
	if strings.Contains(text, "made-up-type") {
		t.Error("a frame type a client made up became a label")
	}
}
