package ferrytest

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on 127.0.0.1 that misbehaves the way networks do:
// it can cut every connection through it (a mobile link that drops), cut
// each one after a random number of bytes from the client (a link that
// drops every few MiB), and stall (a service that hangs instead of
// refusing: connections stay open, nothing is forwarded).
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr string

	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]bool
	gate   chan struct{} // closed while forwarding
	budget func() int64  // bytes from the client before a cut; nil: none
	cuts   int
}

// NewProxy starts a proxy to target (host:port), closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]bool{}, gate: make(chan struct{})}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.Resume()
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// CutAfterRandom makes every connection from now on drop once it has
// carried between min and max bytes from the client, drawn from a
// generator seeded with seed, so that a failing run can be repeated.
func (p *Proxy) CutAfterRandom(minBytes, maxBytes int64, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	p.mu.Lock()
	p.budget = func() int64 { return minBytes + rng.Int64N(maxBytes-minBytes+1) }
	p.mu.Unlock()
}

// Cuts reports how many connections were cut by CutAfterRandom.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Cut drops every connection without a close handshake.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
	clear(p.conns)
}

// Stall stops forwarding until Resume; connections stay open.
func (p *Proxy) Stall() {
	p.mu.Lock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default:
	}
	p.mu.Unlock()
}

// Resume forwards again after Stall.
func (p *Proxy) Resume() {
	p.mu.Lock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
	p.mu.Unlock()
}

// Retarget sends the connections from now on to target (host:port), as
// a load balancer moving clients to another server; Cut moves the open
// ones.
func (p *Proxy) Retarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		budget := int64(-1)
		if p.budget != nil {
			budget = p.budget()
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			cut := p.pipe(out, in, budget)
			p.drop(in, out, cut)
		}()
		go func() {
			defer p.wg.Done()
			p.pipe(in, out, -1)
			p.drop(in, out, false)
		}()
	}
}

// pipe copies src to dst, waiting at the gate before every write, until
// either side fails or budget bytes (when not negative) went through. It
// reports whether the budget ran out.
func (p *Proxy) pipe(dst, src net.Conn, budget int64) bool {
	buf := make([]byte, 32<<10)
	for {
		r := io.Reader(src)
		if budget >= 0 {
			if budget == 0 {
				return true
			}
			r = io.LimitReader(src, budget)
		}
		n, err := r.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
			if budget >= 0 {
				budget -= int64(n)
			}
		}
		if err != nil {
			return false
		}
	}
}

// drop resets both sides of a connection.
func (p *Proxy) drop(in, out net.Conn, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cut && p.conns[in] {
		p.cuts++
	}
	for _, c := range []net.Conn{in, out} {
		reset(c)
		delete(p.conns, c)
	}
}

// reset closes c without a close handshake, as a dead link does.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
