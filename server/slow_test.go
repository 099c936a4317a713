package server

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// rawConnFor makes a conn of s on a loopback socket with small buffers,
// without a WebSocket handshake or a reader, and returns the client's end.
func rawConnFor(t *testing.T, s *Server) (*conn, net.Conn) {
	t.Helper()
	nc, peer := loopback(t, 4096)
	c := &conn{s: s, id: "c_test"}
	_, c.place, _ = s.admit(netip.Addr{}, "u_test", "test")
	c.holds.Store(2)
	if err := c.tr.attach(nc, &s.tenv, c); err != nil {
		t.Fatal(err)
	}
	c.tr.fl = s.flushers.assign(s)
	c.pinger = time.AfterFunc(time.Hour, func() {})
	c.reading.Store(true) // no poller: nothing reads this socket
	s.add(c)
	return c, peer
}

// A client that stops reading is dropped as slow once, however many rooms
// find its queue full at the same moment.
func TestSlowClientCountedOnce(t *testing.T) {
	for range 50 {
		s, err := New(Config{MaxQueue: 32 << 10, WriteDelay: -1})
		if err != nil {
			t.Fatal(err)
		}
		c, peer := rawConnFor(t, s)
		frame := textFrame(make([]byte, 512))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for c.tr.send(frame, kindRoom) {
				}
			})
		}
		wg.Wait()
		n := s.metrics.slow.Load()
		c.kill()
		peer.Close()
		s.flushers.stop()
		s.stop()
		<-s.swept
		if n != 1 {
			t.Fatalf("slow client counted %d times, want once", n)
		}
	}
}
