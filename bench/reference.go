package bench

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// ReferenceHandler serves /ws, /metrics and /healthz the way gorilla's chat
// example does, with gorilla's default buffers: a reader and a writer
// goroutine per connection, a 256-frame send channel, pings from the
// writer. It speaks just enough of ferry's protocol for Idle (a welcome
// frame, heartbeats, the ferry_connections gauge), so that ferry's memory
// per connection can be compared with what a straightforward gorilla server
// costs on the same machine.
func ReferenceHandler(pingInterval time.Duration) http.Handler {
	h := &referenceServer{pingInterval: pingInterval}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", h.serveWS)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# TYPE ferry_connections gauge\nferry_connections %d\n", h.conns.Load())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

type referenceServer struct {
	pingInterval time.Duration
	upgrader     websocket.Upgrader
	conns        atomic.Int64
}

const (
	refWriteWait = 10 * time.Second
	// A connection is dropped after pingInterval + refPongSlack without a
	// pong: the ping period stays below the pong wait, as in the chat
	// example, so a healthy peer is never timed out.
	refPongSlack = 10 * time.Second
)

func (h *referenceServer) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.conns.Add(1)
	send := make(chan []byte, 256)
	send <- fmt.Appendf(nil, `{"t":"welcome","v":1,"ping_interval_ms":%d}`, h.pingInterval.Milliseconds())
	go h.writePump(c, send)
	go h.readPump(c, send)
}

func (h *referenceServer) readPump(c *websocket.Conn, send chan []byte) {
	defer func() {
		h.conns.Add(-1)
		close(send)
		c.Close()
	}()
	pongWait := h.pingInterval + refPongSlack
	c.SetReadLimit(1 << 20)
	_ = c.SetReadDeadline(time.Now().Add(pongWait))
	c.SetPongHandler(func(string) error { return c.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

func (h *referenceServer) writePump(c *websocket.Conn, send chan []byte) {
	t := time.NewTicker(h.pingInterval)
	defer func() {
		t.Stop()
		c.Close()
	}()
	for {
		select {
		case msg, ok := <-send:
			if !ok {
				return
			}
			_ = c.SetWriteDeadline(time.Now().Add(refWriteWait))
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		case <-t.C:
			_ = c.SetWriteDeadline(time.Now().Add(refWriteWait))
			if err := c.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}
