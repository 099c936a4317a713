package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/transfer"
)

// lease is one lock this node holds, kept by a goroutine of its own that
// renews it until it is released, lost, or the Locks closed.
type lease struct {
	l    *Locks
	id   string
	lost func()

	once    sync.Once
	release chan struct{} // closed by Release
	done    chan struct{} // closed once the lease is over and out of l.leases
}

var _ transfer.Lease = (*lease)(nil)

// Release implements transfer.Lease: the lease's goroutine deletes the
// lock.
func (le *lease) Release() { le.once.Do(func() { close(le.release) }) }

// releasing reports whether Release was called.
func (le *lease) releasing() bool {
	select {
	case <-le.release:
		return true
	default:
		return false
	}
}

// keep starts keeping the lock of id, written at revision rev by a
// request sent at sent.
func (l *Locks) keep(id string, rev uint64, sent time.Time, lost func()) (transfer.Lease, error) {
	le := &lease{l: l, id: id, lost: lost, release: make(chan struct{}), done: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.delete(id, rev)
		return nil, errors.New("upload locks: closed")
	}
	l.leases[id] = le
	l.wg.Add(1)
	l.mu.Unlock()
	go le.run(rev, sent)
	return le, nil
}

// run renews the lock every TTL/3 until it is released or the Locks
// close, then deletes it. A renewal that fails is tried again soon (every
// TTL/30), not a third of the TTL later: a NATS leader election refuses
// requests for a few seconds, and one failure must not lose every upload.
// When no renewal succeeded for 2/3 of the TTL, or the lock was taken from
// it, the lock is lost: the entry may expire a third of the TTL later, and
// the upload must not be written any more by then. A renewal's time counts
// from when it was sent, which is before the server wrote it.
func (le *lease) run(rev uint64, sent time.Time) {
	l := le.l
	defer l.wg.Done()
	ttl := l.cfg.TTL
	deadline := sent.Add(ttl * 2 / 3)
	t := time.NewTimer(ttl / 3)
	defer t.Stop()
	lost := false
	for !lost {
		select {
		case <-le.release:
			l.delete(le.id, rev)
			le.end()
			return
		case <-l.ctx.Done():
			l.delete(le.id, rev)
			le.end()
			return
		case <-t.C:
		}
		sent := time.Now()
		if !sent.Before(deadline) {
			lost = true
			break
		}
		ctx, cancel := context.WithTimeout(l.ctx, min(ttl/6, deadline.Sub(sent)))
		next, err := l.kv.Update(ctx, le.id, []byte(l.cfg.Node), rev)
		cancel()
		switch {
		case err == nil:
			rev, deadline = next, sent.Add(ttl*2/3)
			t.Reset(ttl / 3)
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			lost = true // expired, and maybe taken by another node
		case l.ctx.Err() == nil:
			l.cfg.Log.Warn("cannot renew an upload lock", "upload", le.id, "err", err)
			lost = !time.Now().Before(deadline)
			t.Reset(ttl / 30)
		}
	}
	l.cfg.Log.Warn("upload lock lost", "upload", le.id)
	le.end()
	le.lost()
}

// end takes the lease out of the Locks' table.
func (le *lease) end() {
	le.l.mu.Lock()
	if le.l.leases[le.id] == le {
		delete(le.l.leases, le.id)
	}
	le.l.mu.Unlock()
	close(le.done)
}

// delete removes the lock of id if it is still the one written at rev.
// A failure is only logged: the entry expires.
func (l *Locks) delete(id string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), min(l.cfg.TTL/3, 5*time.Second))
	defer cancel()
	err := l.kv.Delete(ctx, id, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		l.cfg.Log.Warn("cannot release an upload lock; it expires", "upload", id, "err", fmt.Sprint(err))
	}
}
