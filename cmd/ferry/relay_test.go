package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// wsRelay stands between ferry clients and a server, message by message:
// it counts what the clients send (binary chunks, base64 chunks) and can
// cut every connection, as a network does, once the clients have sent
// given amounts of chunk bytes.
type wsRelay struct {
	hs     *httptest.Server
	target string // the server's WebSocket URL
	wg     sync.WaitGroup

	mu         sync.Mutex
	conns      []*websocket.Conn
	binary     int      // binary frames from clients
	textChunks int      // upload.chunk text frames from clients
	finishes   []string // the digest fields of each upload.finish ("crc32c", "sha256")
	chunkBytes int64    // chunk payload bytes from clients (binary frames)
	cutAt      []int64
	cuts       int
}

func newRelay(t *testing.T, serverURL string) *wsRelay {
	t.Helper()
	r := &wsRelay{target: "ws" + strings.TrimPrefix(serverURL, "http") + "/ws"}
	up := websocket.Upgrader{}
	r.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := http.Header{}
		if a := req.Header.Get("Authorization"); a != "" {
			h.Set("Authorization", a)
		}
		server, resp, err := websocket.DefaultDialer.Dial(r.target+"?"+req.URL.RawQuery, h)
		if err != nil {
			status := http.StatusBadGateway
			if resp != nil {
				status = resp.StatusCode
			}
			http.Error(w, err.Error(), status)
			return
		}
		client, err := up.Upgrade(w, req, nil)
		if err != nil {
			server.Close()
			return
		}
		r.mu.Lock()
		r.conns = append(r.conns, client, server)
		r.mu.Unlock()
		r.wg.Add(2)
		go func() { defer r.wg.Done(); r.pipe(client, server, true) }()
		go func() { defer r.wg.Done(); r.pipe(server, client, false) }()
	}))
	t.Cleanup(func() {
		r.hs.Close()
		r.cut()
		r.wg.Wait()
	})
	return r
}

func (r *wsRelay) URL() string { return r.hs.URL }

// pipe copies messages from src to dst until either ends.
func (r *wsRelay) pipe(src, dst *websocket.Conn, fromClient bool) {
	defer src.Close()
	defer dst.Close()
	for {
		typ, data, err := src.ReadMessage()
		if err != nil {
			return
		}
		if fromClient && r.count(typ, data) {
			r.cut()
			return
		}
		if err := dst.WriteMessage(typ, data); err != nil {
			return
		}
	}
}

// count records a client message and reports whether the connections must
// be cut before it goes on.
func (r *wsRelay) count(typ int, data []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch typ {
	case websocket.BinaryMessage:
		r.binary++
		if len(data) > 1 {
			r.chunkBytes += int64(len(data) - 2 - int(data[1]) - 8)
		}
		if len(r.cutAt) > 0 && r.chunkBytes >= r.cutAt[0] {
			r.cutAt = r.cutAt[1:]
			r.cuts++
			return true
		}
	case websocket.TextMessage:
		var f struct{ T, SHA256, CRC32C string }
		if json.Unmarshal(data, &f) != nil {
			break
		}
		switch f.T {
		case "upload.chunk":
			r.textChunks++
		case "upload.finish":
			var given []string
			if f.CRC32C != "" {
				given = append(given, "crc32c")
			}
			if f.SHA256 != "" {
				given = append(given, "sha256")
			}
			r.finishes = append(r.finishes, strings.Join(given, "+"))
		}
	}
	return false
}

// cut closes every connection through the relay without a close frame.
func (r *wsRelay) cut() {
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		_ = c.NetConn().Close()
	}
}

// finished returns what each upload.finish from the clients gave.
func (r *wsRelay) finished() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.finishes...)
}

func (r *wsRelay) counts() (binary, textChunks, cuts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.binary, r.textChunks, r.cuts
}
