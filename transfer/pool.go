package transfer

import (
	"sync"
	"sync/atomic"
)

// bufPool hands out part buffers of one size. A few idle buffers are kept
// for certain, so that what one upload allocates is a known number; more go
// to a sync.Pool, which reuses them while uploads are busy and lets the
// garbage collector have them once things are quiet. Every buffer is
// counted so that tests can check the bound.
type bufPool struct {
	size    int
	maxIdle int

	mu       sync.Mutex
	idle     [][]byte
	overflow sync.Pool // of *[]byte

	allocated atomic.Int64 // buffers ever made
	inUse     atomic.Int64
	peak      atomic.Int64 // most buffers in use at once
}

func newBufPool(size, maxIdle int) *bufPool {
	return &bufPool{size: size, maxIdle: maxIdle}
}

// get returns an empty buffer with capacity size.
func (p *bufPool) get() []byte {
	n := p.inUse.Add(1)
	for {
		peak := p.peak.Load()
		if n <= peak || p.peak.CompareAndSwap(peak, n) {
			break
		}
	}
	p.mu.Lock()
	if k := len(p.idle); k > 0 {
		b := p.idle[k-1]
		p.idle[k-1] = nil
		p.idle = p.idle[:k-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	if b, ok := p.overflow.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	p.allocated.Add(1)
	return make([]byte, 0, p.size)
}

func (p *bufPool) put(b []byte) {
	if cap(b) != p.size {
		panic("transfer: foreign buffer returned to the pool")
	}
	p.inUse.Add(-1)
	b = b[:0]
	p.mu.Lock()
	if len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, b)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.overflow.Put(&b)
}
