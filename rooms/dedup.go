package rooms

import (
	"sync"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// dedup remembers the client message ids of recent emits, per user, with
// the ack each one got.
type dedup struct {
	max  int
	mu   sync.Mutex
	seen map[dedupKey]*dedupEntry
}

type dedupKey struct{ user, id string }

type dedupEntry struct {
	d       protocol.Delivered
	at      time.Time
	pending bool
}

func newDedup(max int) dedup {
	return dedup{max: max, seen: make(map[dedupKey]*dedupEntry)}
}

// begin reports whether (user, id) was seen, with its ack. When it was not,
// it is reserved so that a concurrent resend is seen too.
func (d *dedup) begin(user, id string, now time.Time) (protocol.Delivered, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dedupKey{user, id}
	if e := d.seen[k]; e != nil {
		return e.d, true
	}
	if len(d.seen) >= d.max {
		return protocol.Delivered{}, false // full until the sweep: not remembered
	}
	d.seen[k] = &dedupEntry{at: now, pending: true}
	return protocol.Delivered{}, false
}

// end records the ack of a reserved id, or forgets it when the emit failed
// (so that the client may retry).
func (d *dedup) end(user, id string, del protocol.Delivered, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dedupKey{user, id}
	e := d.seen[k]
	if e == nil {
		return
	}
	if !ok {
		delete(d.seen, k)
		return
	}
	e.d, e.pending = del, false
}

func (d *dedup) expire(before time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, e := range d.seen {
		if e.at.Before(before) {
			delete(d.seen, k)
		}
	}
}
