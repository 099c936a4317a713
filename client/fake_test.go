package client

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// fakeServer is a WebSocket endpoint whose behaviour each test scripts, to
// make the client face what a real server rarely does on cue: silence,
// abrupt drops, particular close codes.
type fakeServer struct {
	hs    *httptest.Server
	URL   string
	conns atomic.Int32

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // running handlers, once upgraded
}

// newFake serves handle(n, r, ws) for the n-th connection (from 1). The
// connection is closed when handle returns.
func newFake(t testing.TB, handle func(n int, r *http.Request, ws *websocket.Conn)) *fakeServer {
	return newRefusingFake(t, nil, handle)
}

// newRefusingFake is newFake, except that connection n is refused with HTTP
// status refuse(n) when that is not 0.
func newRefusingFake(t testing.TB, refuse func(n int) int, handle func(n int, r *http.Request, ws *websocket.Conn)) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	up := websocket.Upgrader{}
	f.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(f.conns.Add(1))
		if refuse != nil {
			if status := refuse(n); status != 0 {
				http.Error(w, "refused by the test", status)
				return
			}
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		f.wg.Add(1)
		f.mu.Unlock()
		defer f.wg.Done()
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		handle(n, r, ws)
	}))
	f.URL = f.hs.URL
	t.Cleanup(func() {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		f.hs.Close()
		f.wg.Wait()
	})
	return f
}

// welcomeFrame is a welcome with the given heartbeat, in milliseconds.
func welcomeFrame(n int, intervalMS, timeoutMS int64) protocol.Welcome {
	return protocol.Welcome{
		T: protocol.TypeWelcome, V: protocol.Version,
		Conn: "c_" + string(rune('a'+n)), User: "u_fake", Name: "fake", Token: "fake-token",
		PingIntervalMS: intervalMS, PingTimeoutMS: timeoutMS,
		Limits: protocol.Limits{MaxFrame: 1 << 20, MaxChunk: 1024},
	}
}

// answer plays a minimal server until the connection ends: it acks every
// request and answers pings, and calls also (when set) with every frame.
func answer(ws *websocket.Conn, also func(typ int, data []byte)) {
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if also != nil {
			also(typ, data)
		}
		if typ != websocket.TextMessage {
			continue
		}
		var req protocol.Request
		if json.Unmarshal(data, &req) != nil {
			continue
		}
		switch {
		case req.T == protocol.TypePing:
			_ = ws.WriteJSON(protocol.Pong{T: protocol.TypePong, TS: req.TS})
		case req.T == protocol.TypeJoin && req.ID != 0:
			_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: protocol.RoomMembers{Room: req.Room}})
		case req.ID != 0:
			_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: req.ID})
		}
	}
}

// drain reads until the connection ends, answering nothing.
func drain(ws *websocket.Conn) {
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
	}
}
