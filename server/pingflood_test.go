package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/server"
)

// A client that floods WebSocket pings and does not read cannot grow the
// server's queue past --max-queue: pongs beyond it are dropped (RFC 6455
// lets a pong answer only the latest ping), the flood is counted, and the
// connection goes on.
func TestPingFloodIsBounded(t *testing.T) {
	const maxQueue = 64 << 10
	_, url := startServer(t, server.Config{MaxQueue: maxQueue})
	p := dial(t, url)
	p.mustAck(frame{"t": "join", "room": "lobby"})

	// Pings written straight to the socket, masked as a client must.
	nc := p.ws.NetConn()
	ping := []byte{0x89, 0x80 | 125, 1, 2, 3, 4}
	ping = append(ping, make([]byte, 125)...)
	for i := 6; i < len(ping); i++ {
		ping[i] = byte(i) ^ []byte{1, 2, 3, 4}[(i-6)%4]
	}
	const pings = 200_000 // 26 MB of pongs, more than socket buffers hold
	batch := make([]byte, 0, 1000*len(ping))
	for range 1000 {
		batch = append(batch, ping...)
	}
	_ = nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	for range pings / 1000 {
		if _, err := nc.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	dropped := ferrytest.Metric(t, strings.TrimSuffix(strings.Replace(url, "ws://", "http://", 1), "/ws"), "ferry_pongs_dropped_total")
	t.Logf("%d pings, %d pongs dropped", pings, dropped)
	if dropped == 0 {
		t.Fatal("every pong was queued for a client that does not read")
	}

	// Reading again, the client gets the pongs that fit, then the answer
	// to its next request: the connection went on.
	p.mustAck(frame{"t": "emit", "room": "lobby", "event": "chat", "data": "still here"})
}
