package transfer

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Locker is an optional capability for several nodes sharing one store:
// it makes sure that one node at a time holds an upload in memory and
// writes it, so that any node can resume any upload without two of them
// storing its parts or its manifest at once. Config.Locker nil (the
// default) is a single node: no locks.
//
// A manager takes an upload's lock when it opens it, or resumes it from
// its manifest, and releases it when the upload leaves its memory: it
// completed, failed or was canceled, or it was paused (its connection
// gone and Config.Idle over, or its memory reclaimed), or another node
// asked for it while it waited for its client (Manager.Yield). Reading
// the manifest only once the lock is held is what makes a resume on
// another node continue from what is stored, never from further.
type Locker interface {
	// Lock takes upload id's lock for this node and keeps it until the
	// lease is released. When another node holds it, Lock asks that node
	// to let go of it (Manager.Yield there) and fails with an error
	// wrapping ErrLocked if it did not in time; the manager answers
	// CodeBusy, and the client tries again. lost is called, once, from
	// the locker's own goroutine, if the lock can no longer be counted
	// on (it could not be renewed in time), before another node can take
	// it: the upload must stop writing at once.
	Lock(ctx context.Context, id string, lost func()) (Lease, error)
}

// Lease is a lock a Locker gave.
type Lease interface {
	// Release lets go of the lock, without waiting: the manager calls it
	// with its locks held. Calling it again does nothing.
	Release()
}

// ErrLocked is what a Locker's Lock wraps when another node holds the
// lock.
var ErrLocked = errors.New("transfer: the upload is held by another node")

// DefaultLockRetry is when a resume refused because another node holds
// the upload may try again: that node lets go of a paused upload within
// a moment (after storing the parts it had whole), and a dead node's lock
// expires within the locker's TTL.
const DefaultLockRetry = 500 * time.Millisecond

// lease is the lock of one upload, and the upload it protects once it is
// bound (the locker may report the lock lost before that).
type lease struct {
	m    *Manager
	held Lease
	u    atomic.Pointer[upload]
	gone atomic.Bool
}

// lockUpload takes the lock of upload id: nil without a Locker.
func (m *Manager) lockUpload(ctx context.Context, id string) (*lease, error) {
	if m.locker == nil {
		return nil, nil
	}
	l := &lease{m: m}
	held, err := m.locker.Lock(ctx, id, l.lost)
	switch {
	case errors.Is(err, ErrLocked):
		e := wrapf(err, CodeBusy, "upload %s is busy on another server; try again shortly", id)
		e.RetryAfter = DefaultLockRetry
		return nil, e
	case err != nil:
		return nil, wrapf(err, CodeStorageUnavailable, "cannot lock upload %s", id)
	}
	l.held = held
	return l, nil
}

// bind makes l the lock of u, which lets go of it when it leaves memory.
func (l *lease) bind(u *upload) {
	if l == nil {
		return
	}
	u.lease = l
	l.u.Store(u)
	if l.gone.Load() {
		l.m.leaseLost(u)
	}
}

// release lets go of the lock. It does nothing on nil.
func (l *lease) release() {
	if l != nil {
		l.held.Release()
	}
}

// lost is the Locker's report that the lock can no longer be counted on.
func (l *lease) lost() {
	l.gone.Store(true)
	if u := l.u.Load(); u != nil {
		l.m.leaseLost(u)
	}
}

// leaseLost takes u out of this node at once, writing nothing more: its
// context ends, which stops its worker and the parts it stores ahead, its
// bytes in memory go, and the client hears CodeUnknownUpload, so that it
// resumes, here or elsewhere, from what is stored. The upload leaves the
// manager's table before its worker has exited, so that no resume here
// finds it half stopped; the buffers that worker still holds are over the
// part memory count until it has, a moment. It may run twice.
func (m *Manager) leaseLost(u *upload) {
	m.mu.Lock()
	u.mu.Lock()
	sink := u.sink
	if u.status != statusUploading {
		sink = nil
	}
	u.sink = nil
	u.detachLocked()
	u.dropLocked(false)
	u.mu.Unlock()
	u.cancel()
	if m.uploads[u.id] == u {
		m.forgetLocked(u)
	}
	m.mu.Unlock()
	u.log.Warn("upload lock lost: the upload leaves this server")
	if sink != nil {
		sink.Failed(u.id, errorf(CodeUnknownUpload, "upload %s moved to another server; resume it", u.id))
	}
}

// Yield lets go of upload id for another node that wants to resume it, if
// it waits here for a client that went away: the bytes of the part being
// filled go (the client resends them), and the lock is released once the
// parts already whole are stored. It reports whether the upload is gone
// from this node; an upload a connection is attached to stays. The
// Locker calls it when another node asks for the lock.
func (m *Manager) Yield(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.uploads[id]
	if u == nil {
		return true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sink != nil || u.writing || u.unrecorded {
		return false
	}
	if u.status == statusUploading {
		u.log.Info("upload yielded to another server", "received", u.received, "durable", u.durable)
		u.dropLocked(false)
	}
	if u.evictableLocked() {
		m.forgetLocked(u)
		return true
	}
	// Its worker stores the sealed parts, then evicts it.
	return false
}
