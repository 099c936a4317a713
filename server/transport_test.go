package server

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// events records what a transport reports to its session.
type events struct {
	cuts, closes atomic.Int32
	closed       chan struct{}
}

func (e *events) socketCut() { e.cuts.Add(1) }
func (e *events) socketClosed() {
	if e.closes.Add(1) == 1 {
		close(e.closed)
	}
}
func (e *events) logger() *slog.Logger { return slog.New(slog.DiscardHandler) }

var _ transportEvents = (*events)(nil)

// loopback returns both ends of a loopback TCP connection whose server
// end writes, and client end reads, through buffers of bufSize bytes.
func loopback(t *testing.T, bufSize int) (nc, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	nc, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = peer.(*net.TCPConn).SetReadBuffer(bufSize)
	_ = nc.(*net.TCPConn).SetWriteBuffer(bufSize)
	return nc, peer
}

// transportPair returns a transport of s on a loopback socket with buffers
// of bufSize bytes, the events it reports, and the client's end.
func transportPair(t *testing.T, s *Server, bufSize int) (*transport, *events, net.Conn) {
	t.Helper()
	nc, peer := loopback(t, bufSize)
	tr, ev := &transport{}, &events{closed: make(chan struct{})}
	if err := tr.attach(nc, &s.tenv, ev); err != nil {
		t.Fatal(err)
	}
	tr.fl = s.flushers.assign(s)
	return tr, ev, peer
}

func testServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.flushers.stop()
		s.stop()
		<-s.swept
	})
	return s
}

func (tr *transport) stateNow() sockState {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.state
}

// waitClosed waits for the transport to report its socket closed.
func waitClosed(t *testing.T, ev *events) {
	t.Helper()
	select {
	case <-ev.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("socket not closed")
	}
}

// A transport's life goes one way, and each of its ends is reported once
// however many callers race to cause it.
func TestTransportEndsOnce(t *testing.T) {
	s := testServer(t, Config{})
	for range 20 {
		tr, ev, peer := transportPair(t, s, 4096)
		go func() { _, _ = io.Copy(io.Discard, peer) }()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for range 50 {
					switch i % 4 {
					case 0:
						tr.send(textFrame([]byte("hello")), kindRoom)
					case 1:
						tr.close(1000, "bye")
					case 2:
						tr.release()
					default:
						tr.cut()
					}
				}
			})
		}
		wg.Wait()
		waitClosed(t, ev)
		if got := tr.stateNow(); got != sockClosed {
			t.Fatalf("state %d, want closed", got)
		}
		if c, d := ev.cuts.Load(), ev.closes.Load(); c != 1 || d != 1 {
			t.Fatalf("reported %d cuts and %d closes, want one of each", c, d)
		}
		if tr.send(pingFrame, kindControl) {
			t.Fatal("a closed transport queued a frame")
		}
	}
}

// What each state lets through, and the order in which a session that ends
// while its close frame waits in the queue sees the socket go.
func TestTransportStates(t *testing.T) {
	s := testServer(t, Config{MaxQueue: 4 << 20})
	s.tenv.closeGrace = time.Hour
	// Buffers small enough for the queue not to fit, large enough for
	// TCP not to crawl through zero windows once the client reads.
	tr, ev, peer := transportPair(t, s, 64<<10)

	// Open: everything is queued.
	if !tr.send(textFrame([]byte("a")), kindRoom) || !tr.send(pingFrame, kindControl) {
		t.Fatal("an open transport refused a frame")
	}
	// The client does not read: fill the socket and the queue behind it.
	big := textFrame(bytes.Repeat([]byte("x"), 64<<10))
	for range 32 {
		tr.send(big, kindReply)
	}
	tr.close(4000, "closing")
	if tr.stateNow() != sockClosing {
		t.Fatalf("state %d after close, want closing", tr.stateNow())
	}
	if tr.send(textFrame([]byte("late")), kindReply) {
		t.Fatal("a closing transport queued a data frame")
	}
	if !tr.send(pingFrame, kindControl) {
		t.Fatal("a closing transport refused a control frame")
	}
	// The session ends with the close frame still queued: draining, and the
	// socket stays open for it.
	tr.release()
	if got := tr.stateNow(); got != sockDraining {
		t.Fatalf("state %d after release, want draining", got)
	}
	if ev.cuts.Load() != 0 {
		t.Fatal("cut before the close frame was written")
	}
	// The client reads: it gets everything up to the close frame, then the
	// end of the stream, without the grace timer (made too long to matter
	// here) cutting it.
	all, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ev)
	want := closeFrame(4000, "closing")
	if i := bytes.Index(all, want); i < 0 || !bytes.HasSuffix(all, append(append([]byte{}, want...), pingFrame...)) {
		t.Fatalf("the stream does not end with the close frame and the ping after it (%d bytes)", len(all))
	}
}

// A session that ends while the transport is open cuts the socket at once;
// frames still queued are dropped.
func TestTransportReleaseWhileOpen(t *testing.T) {
	s := testServer(t, Config{})
	tr, ev, peer := transportPair(t, s, 4096)
	tr.release()
	waitClosed(t, ev)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(peer); err != nil {
		t.Fatalf("the client's read ended with %v, want the end of the stream", err)
	}
	if ev.cuts.Load() != 1 {
		t.Fatalf("%d cuts reported", ev.cuts.Load())
	}
}
