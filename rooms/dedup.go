package rooms

import (
	"sync"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// dedup remembers the client message ids of recent emits, per user, with
// the ack each one got.
type dedup struct {
	mu    sync.Mutex
	seen  map[dedupKey]*dedupEntry
	bound fairBound[dedupKey]
}

type dedupKey struct{ user, id string }

type dedupEntry struct {
	d  protocol.Delivered
	at time.Time
	// done is closed once the first emit with the id has its ack (or
	// failed and is forgotten).
	done chan struct{}
	// elsewhere is set, while the emit runs, when another node's event
	// with the id reached the hub (see restore): the emit then answers
	// with its position instead of publishing.
	elsewhere *protocol.Delivered
}

func newDedup(perUser, max int) dedup {
	return dedup{seen: make(map[dedupKey]*dedupEntry), bound: newFairBound[dedupKey](perUser, max)}
}

// begin reports whether (user, id) was seen, with its ack. When it was not,
// it is reserved: a resend arriving while the first emit runs waits for it
// and gets its ack.
func (d *dedup) begin(user, id string, now time.Time) (protocol.Delivered, bool) {
	k := dedupKey{user, id}
	d.mu.Lock()
	for {
		e := d.seen[k]
		if e == nil {
			break
		}
		select {
		case <-e.done:
			d.mu.Unlock()
			return e.d, true
		default:
		}
		d.mu.Unlock()
		<-e.done
		d.mu.Lock() // the first emit failed and was forgotten, or has its ack
	}
	defer d.mu.Unlock()
	d.reserveLocked(user, k, now)
	return protocol.Delivered{}, false
}

// tryBegin is begin for a direct message another hub sent (see
// Hub.Receive), which does not wait for an emit of the id still running
// here: that emit may be the one waiting for this message's answer. It
// then reserves nothing (reserved false), and the message is not
// deduplicated.
func (d *dedup) tryBegin(user, id string, now time.Time) (del protocol.Delivered, seen, reserved bool) {
	k := dedupKey{user, id}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.seen[k]; e != nil {
		select {
		case <-e.done:
			return e.d, true, false
		default:
			return protocol.Delivered{}, false, false
		}
	}
	d.reserveLocked(user, k, now)
	return protocol.Delivered{}, false, true
}

func (d *dedup) reserveLocked(user string, k dedupKey, now time.Time) {
	d.boundLocked(user, k)
	d.seen[k] = &dedupEntry{at: now, done: make(chan struct{})}
}

// boundLocked counts k against user's share and the table's bound,
// dropping what they push out.
func (d *dedup) boundLocked(user string, k dedupKey) {
	for _, old := range d.bound.add(user, k) {
		// An emit still running keeps its entry until it ends (its resends
		// wait on it); expire takes it then.
		select {
		case <-d.seen[old].done:
			delete(d.seen, old)
		default:
		}
	}
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
	if ok {
		e.d = del
	} else {
		delete(d.seen, k)
		d.bound.remove(k)
	}
	close(e.done)
}

func (d *dedup) expire(before time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, e := range d.seen {
		select {
		case <-e.done:
			if e.at.Before(before) {
				delete(d.seen, k)
				d.bound.remove(k)
			}
		default: // still running: end needs it
		}
	}
	d.bound.compact()
}

// restore remembers (user, id) as seen with ack d, at when it was first
// published: a room loaded from the journal brings back the ids of its
// events, so a client's resend after a restart is still a duplicate, and
// so do other nodes' events (see SharedJournal), so that a resend through
// another node is one too. An id already known is left alone; one being
// published learns that it was published elsewhere.
func (d *dedup) restore(user, id string, del protocol.Delivered, at time.Time) {
	k := dedupKey{user, id}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.seen[k]; e != nil {
		select {
		case <-e.done:
		default:
			if e.elsewhere == nil {
				e.elsewhere = &del
			}
		}
		return
	}
	d.boundLocked(user, k)
	done := make(chan struct{})
	close(done)
	d.seen[k] = &dedupEntry{d: del, at: at, done: done}
}

// elsewhere returns where another node published (user, id), if it did
// while this hub's emit with the id runs.
func (d *dedup) elsewhere(user, id string) (protocol.Delivered, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.seen[dedupKey{user, id}]; e != nil && e.elsewhere != nil {
		return *e.elsewhere, true
	}
	return protocol.Delivered{}, false
}
