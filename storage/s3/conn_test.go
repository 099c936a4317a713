package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingConn counts the writes of the bytes that follow the request's
// headers.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestPartSentInOneWrite sends a part held in memory through net/http, as
// minio-go does, and checks that it reaches the socket in one write, not in
// 32 KiB pieces, and arrives intact.
func TestPartSentInOneWrite(t *testing.T) {
	const size = 4 << 20
	part := make([]byte, size)
	rand.Read(part)
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer srv.Close()

	var conns []*countingConn
	var mu sync.Mutex
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := &countingConn{Conn: c}
		mu.Lock()
		conns = append(conns, cc)
		mu.Unlock()
		return cc, nil
	}
	tr := &http.Transport{DialContext: sendDialer(dial)}
	defer tr.CloseIdleConnections()

	// Part 2 of a buffer of two: the section starts past the reader's start.
	buf := append(make([]byte, 100), part...)
	r := bytes.NewReader(buf)
	r.Seek(100, io.SeekStart)
	req, _ := http.NewRequest(http.MethodPut, srv.URL, io.NopCloser(body(r, size)))
	req.ContentLength = size
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if b := <-got; !bytes.Equal(b, part) {
		t.Fatalf("the server got %d bytes, not the part's %d", len(b), size)
	}
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	w := conns[0].writes
	if len(w) != 2 || w[1] != size {
		t.Errorf("writes %v: want the headers, then the %d bytes of the part in one", w, size)
	}
}

// TestSendConnBodies covers what sendConn gets besides a part: a body that
// cannot write itself, and one longer than its length.
func TestSendConnBodies(t *testing.T) {
	tests := []struct {
		name    string
		r       func() io.Reader
		want    string
		wantErr error
	}{
		{"reader", func() io.Reader { return io.LimitReader(struct{ io.Reader }{strings.NewReader("abcdef")}, 4) }, "abcd", nil},
		{"exact", func() io.Reader { return io.LimitReader(strings.NewReader("abcd"), 4) }, "abcd", nil},
		{"too long", func() io.Reader { return io.LimitReader(strings.NewReader("abcdef"), 4) }, "abcd", errBodyTooLong},
		{"unlimited", func() io.Reader { return strings.NewReader("abcdef") }, "abcdef", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			got := make(chan []byte, 1)
			go func() {
				d, _ := io.ReadAll(b)
				got <- d
			}()
			n, err := sendConn{a}.ReadFrom(tt.r())
			a.Close()
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if d := <-got; string(d) != tt.want || n != int64(len(tt.want)) {
				t.Errorf("sent %q (n = %d), want %q", d, n, tt.want)
			}
		})
	}
}

// gate is a writer that blocks until released.
type gate struct {
	entered, release chan struct{}
}

func (g gate) Write(p []byte) (int, error) {
	close(g.entered)
	<-g.release
	return len(p), nil
}

// Once its call returned, a body is not read any more, whatever net/http
// does: done waits for the read under way, and later reads fail.
func TestBodyDone(t *testing.T) {
	b := body(bytes.NewReader([]byte("part")), 4)
	g := gate{entered: make(chan struct{}), release: make(chan struct{})}
	wrote := make(chan error, 1)
	go func() {
		_, err := b.(io.WriterTo).WriteTo(g)
		wrote <- err
	}()
	<-g.entered
	ended := make(chan struct{})
	go func() {
		done(b)
		close(ended)
	}()
	select {
	case <-ended:
		t.Fatal("done returned while the body was being written")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.release)
	<-ended
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 4)); !errors.Is(err, errBodyDone) {
		t.Errorf("Read after done: %v", err)
	}
	if _, err := b.(io.Seeker).Seek(0, io.SeekStart); !errors.Is(err, errBodyDone) {
		t.Errorf("Seek after done: %v", err)
	}
}
