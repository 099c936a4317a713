package server_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// linkPeer is a client of the protocol as docs/protocol.md describes it,
// written for links that die: every call returns the error instead of
// failing the test. One goroutine reads; frames that answer nothing go to
// events.
type linkPeer struct {
	ws      *websocket.Conn
	welcome protocol.Welcome
	nextID  uint64
	frames  chan frame
	dead    chan struct{}
	window  int64 // of the last grant
}

func dialLink(rawURL string) (*linkPeer, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(rawURL, nil)
	if err != nil {
		return nil, err
	}
	p := &linkPeer{ws: ws, frames: make(chan frame, 1024), dead: make(chan struct{})}
	go func() {
		defer close(p.dead)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			if json.Unmarshal(b, &f) == nil {
				select {
				case p.frames <- f:
				default: // a reader that stopped looking: only a test bug gets here
				}
			}
		}
	}()
	f, err := p.next(5 * time.Second)
	if err != nil || f["t"] != "welcome" {
		ws.Close()
		return nil, fmt.Errorf("no welcome: %v %v", f, err)
	}
	b, _ := json.Marshal(f)
	_ = json.Unmarshal(b, &p.welcome)
	return p, nil
}

var errLinkDown = errors.New("link down")

func (p *linkPeer) next(timeout time.Duration) (frame, error) {
	select {
	case f := <-p.frames:
		return f, nil
	case <-p.dead:
		return nil, errLinkDown
	case <-time.After(timeout):
		return nil, errors.New("nothing received in time")
	}
}

// request sends f and returns its ack or error; onOther sees the frames
// that arrive meanwhile.
func (p *linkPeer) request(f frame, onOther func(frame)) (frame, error) {
	p.nextID++
	f["id"] = p.nextID
	if err := p.ws.WriteJSON(f); err != nil {
		return nil, err
	}
	for {
		r, err := p.next(10 * time.Second)
		if err != nil {
			return nil, err
		}
		if (r["t"] == "ack" || r["t"] == "error") && r["id"] == float64(p.nextID) {
			return r, nil
		}
		if onOther != nil {
			onOther(r)
		}
	}
}

// flakyStats is what an upload over a flaky link cost.
type flakyStats struct {
	connections int
	resent      []int64 // bytes sent again after each drop
	window      int64   // the largest granted
}

// uploadOverLink uploads data over connections to rawURL until it is done,
// reconnecting after every drop and resuming at the offset the server
// grants, and returns the file object of upload.done. It hashes what it
// sends, a CRC32C when crc (crc32c_later) or else a SHA-256
// (sha256_later), and gives the server that with upload.finish.
func uploadOverLink(t *testing.T, rawURL string, data []byte, b64, crc bool) (map[string]any, flakyStats) {
	t.Helper()
	var (
		st       flakyStats
		token    string
		id       string
		lastSent = int64(-1)
		size     = int64(len(data))
		h        = sha256.New() // over data[:hashed], as sent the first time
		hashed   int64
	)
	later := "sha256"
	if crc {
		h, later = crc32.New(crc32.MakeTable(crc32.Castagnoli)), "crc32c"
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		u := rawURL + "?name=flaky"
		if token != "" {
			u += "&token=" + url.QueryEscape(token)
		}
		p, err := dialLink(u)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		st.connections++
		if p.welcome.Token != "" {
			token = p.welcome.Token
		}
		file, sent, err := p.uploadOnce(&id, data, b64, later, func(granted int64) {
			if lastSent >= 0 {
				st.resent = append(st.resent, lastSent-granted)
			}
		}, func(upTo int64) {
			if upTo > hashed {
				h.Write(data[hashed:upTo])
				hashed = upTo
			}
		}, func() string { return hex.EncodeToString(h.Sum(nil)) })
		st.window = max(st.window, p.window)
		p.ws.Close()
		<-p.dead
		if file != nil {
			return file, st
		}
		if sent >= 0 {
			lastSent = sent
		}
		var pe *protocol.Error
		if errors.As(err, &pe) {
			t.Fatalf("upload refused: %v", err)
		}
	}
	t.Fatalf("upload of %d bytes did not finish in time (%d connections)", size, st.connections)
	return nil, st
}

// uploadOnce opens or resumes the upload on p and sends until it is done
// or the link drops. It returns the file, or how far it had sent (-1 if
// it sent nothing) and why it stopped.
func (p *linkPeer) uploadOnce(id *string, data []byte, b64 bool, later string, granted func(int64), hashTo func(int64), digest func() string) (map[string]any, int64, error) {
	size := int64(len(data))
	if _, err := p.request(frame{"t": "join", "room": "lobby"}, nil); err != nil {
		return nil, -1, err
	}
	open := frame{"t": "upload.open", "room": "lobby", "name": "flaky.bin", "size": size, later + "_later": true, "chunk_size": 256 << 10}
	if *id != "" {
		open = frame{"t": "upload.open", "resume": *id}
	}
	var durable int64
	if *id != "" {
		st, err := p.request(frame{"t": "upload.status", "upload": *id}, nil)
		if err != nil {
			return nil, -1, err
		}
		if d, ok := st["data"].(map[string]any); ok {
			durable = int64(d["durable"].(float64))
		}
	}
	onOther := func(f frame) {
		if f["t"] == "upload.progress" && f["upload"] == *id {
			durable = max(durable, int64(f["offset"].(float64)))
		}
	}
	r, err := p.request(open, onOther)
	if err != nil {
		return nil, -1, err
	}
	if r["t"] == "error" {
		if r["code"] == protocol.CodeBusy {
			time.Sleep(time.Duration(r["retry_after_ms"].(float64)) * time.Millisecond)
			return nil, -1, errLinkDown
		}
		return nil, -1, &protocol.Error{Code: r["code"].(string), Message: fmt.Sprint(r["message"])}
	}
	g := r["data"].(map[string]any)
	*id = g["upload"].(string)
	sent := int64(g["offset"].(float64))
	window := int64(g["window"].(float64))
	p.window = window
	granted(sent)
	if f, ok := g["file"].(map[string]any); ok {
		return f, sent, nil
	}
	const chunk = 256 << 10
	finished := false
	for {
		for sent < size && sent+chunk-durable <= window {
			end := min(sent+chunk, size)
			hashTo(end)
			var err error
			if b64 {
				err = p.ws.WriteJSON(frame{"t": "upload.chunk", "upload": *id, "offset": sent, "data": base64.StdEncoding.EncodeToString(data[sent:end])})
			} else {
				msg := protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: *id, Offset: sent})
				err = p.ws.WriteMessage(websocket.BinaryMessage, append(msg, data[sent:end]...))
			}
			if err != nil {
				return nil, sent, err
			}
			sent = end
		}
		if sent == size && !finished {
			p.nextID++
			if err := p.ws.WriteJSON(frame{"t": "upload.finish", "id": p.nextID, "upload": *id, later: digest()}); err != nil {
				return nil, sent, err
			}
			finished = true
		}
		f, err := p.next(15 * time.Second)
		if err != nil {
			return nil, sent, err
		}
		switch {
		case f["t"] == "upload.done" && f["upload"] == *id:
			return f["file"].(map[string]any), sent, nil
		case f["t"] == "error" && f["upload"] == *id:
			switch f["code"] {
			case protocol.CodeStorageUnavailable:
			case protocol.CodeBadOffset, protocol.CodeWindowExceeded:
				sent = int64(f["offset"].(float64))
			default:
				return nil, sent, &protocol.Error{Code: f["code"].(string), Message: fmt.Sprint(f["message"])}
			}
		default:
			onOther(f)
		}
	}
}

// Uploads over a link that drops every 1-6 MiB all finish, byte-exact,
// and every drop costs only the bytes that were in flight: the server
// keeps everything it received whole, the part being filled included.
func TestUploadsOverFlakyLink(t *testing.T) {
	const partSize, bigPartSize = 8 << 20, 32 << 20
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			e := newFileEnv(t, mk(t), transfer.Config{PartSize: partSize, BigPartSize: bigPartSize}, server.Config{})
			link := ferrytest.NewProxy(t, e.URL[len("http://"):])
			link.CutAfterRandom(1<<20, 6<<20, 42)
			cases := []struct {
				size     int
				b64, crc bool
			}{{16 << 20, false, false}, {24<<20 + 12345, true, true}, {64 << 20, false, true}}
			if name == "minio" {
				cases = cases[:2]
			}
			for _, c := range cases {
				data := randomBytes(c.size)
				file, st := uploadOverLink(t, "ws://"+link.Addr+"/ws", data, c.b64, c.crc)
				if file["sha256"] != sha(data) || int(file["size"].(float64)) != c.size {
					t.Fatalf("stored %v, want %d bytes with SHA-256 %s", file, c.size, sha(data))
				}
				_, body := e.download(t, file["url"].(string), nil)
				if sha(body) != sha(data) {
					t.Fatalf("downloaded %d bytes that differ from the %d sent", len(body), c.size)
				}
				worst := slices.Max(append(st.resent, 0))
				var total int64
				for _, r := range st.resent {
					total += r
				}
				// A lone upload gets parts of BigPartSize: the bound
				// checked, PartSize, is a quarter of its part.
				t.Logf("%d MiB base64=%v crc32c=%v: %d connections, %d drops, bytes re-sent per drop: mean %d KiB, max %d KiB (window %d MiB, parts %d MiB; bound %d MiB)",
					c.size>>20, c.b64, c.crc, st.connections, len(st.resent), total/int64(max(1, len(st.resent)))>>10, worst>>10, st.window>>20, bigPartSize>>20, partSize>>20)
				if len(st.resent) == 0 {
					t.Errorf("no drop happened: the link is not flaky")
				}
				for _, r := range st.resent {
					if r < 0 || r >= partSize {
						t.Errorf("a drop cost %d bytes: want what was in flight, never a whole part (%d)", r, partSize)
					}
				}
			}
		})
	}
}
