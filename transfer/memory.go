package transfer

import (
	"context"
	"slices"
	"time"
)

// Part memory. Every upload in memory holds its window (Parts × its part
// size) of Config.PartMemory from the moment it is opened or restored until
// it leaves memory, so that the buffers of all uploads together never pass
// the cap whatever clients do, and an upload that got in can always fill
// and store its parts. The windows are reserved rather than the buffers
// counted as they are taken: refusing a chunk halfway through a part would
// leave every upload holding part of a part, and none able to finish one.

// busy is the answer to an upload that finds no part memory free.
func busy() *Error {
	e := errorf(CodeBusy, "the server has no upload memory free right now; try again shortly")
	e.RetryAfter = DefaultBusyRetry
	return e
}

// need is the part memory an upload of size bytes with parts of partSize
// can hold: its window, or its size when that is smaller (a photo needs
// no more than itself).
func (m *Manager) need(partSize int, size int64) int64 {
	if size < int64(partSize) {
		return size // one buffer of exactly its size (see getBuf)
	}
	// Every part, the short last one included, takes a whole buffer.
	return min(m.window(partSize), (size+int64(partSize)-1)/int64(partSize)*int64(partSize))
}

// reserveLocked takes n bytes of part memory for u, if they fit in all
// and in its user's share. m.mu is held.
func (m *Manager) reserveLocked(u *upload, n int64) bool {
	if !m.fitsLocked(u.owner.User, n) {
		return false
	}
	m.reserved += n
	m.byUser[u.owner.User] += n
	return true
}

// fitsLocked reports whether user may take n more bytes of part memory.
func (m *Manager) fitsLocked(user string, n int64) bool {
	return m.reserved+n <= m.partMemory && m.byUser[user]+n <= m.userMemory
}

// reserveNew picks the part size of u, a new upload, and reserves what it
// needs: BigPartSize parts while the windows in memory, its own included,
// fit in BigPartMemory, PartSize otherwise. Paused uploads give up the
// bytes they keep for their client if that makes room. CodeBusy when
// nothing does.
func (m *Manager) reserveNew(u *upload) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.need(m.bigPartSize, u.size); m.bigPartSize > m.partSize && u.size > int64(m.partSize) &&
		m.reserved+n <= m.bigMemory && m.reserveLocked(u, n) {
		u.partSize, u.reserved = m.bigPartSize, n
		return nil
	}
	u.partSize = m.partSize
	return m.reserveUploadLocked(u)
}

// reserve takes the window of u, an upload being restored or reattached,
// unless it holds it already.
func (m *Manager) reserve(u *upload) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reserveUploadLocked(u)
}

func (m *Manager) reserveUploadLocked(u *upload) error {
	if u.reserved > 0 {
		return nil
	}
	n := m.need(u.partSize, u.size)
	if m.reserveLocked(u, n) || m.reclaimLocked(u.owner.User, n) && m.reserveLocked(u, n) {
		u.reserved = n
		return nil
	}
	return busy()
}

// unreserve gives back the window of u, an upload that never made it into
// memory or is leaving it.
func (m *Manager) unreserve(u *upload) {
	m.mu.Lock()
	m.unreserveLocked(u)
	m.mu.Unlock()
}

func (m *Manager) unreserveLocked(u *upload) {
	m.reserved -= u.reserved
	if m.byUser[u.owner.User] -= u.reserved; m.byUser[u.owner.User] <= 0 {
		delete(m.byUser, u.owner.User)
	}
	u.reserved = 0
}

// forgetLocked removes u from memory: its storage work ends and its window
// goes back. m.mu is held.
func (m *Manager) forgetLocked(u *upload) {
	if m.uploads[u.id] == u {
		delete(m.uploads, u.id)
	}
	u.cancel()
	m.unreserveLocked(u)
	m.releaseLocked(u)
}

// releaseLocked lets go of u's lock, if it holds one. m.mu is held.
func (m *Manager) releaseLocked(u *upload) {
	u.lease.release()
	u.lease = nil
}

// reclaimLocked makes room for need more bytes of windows for user by
// pausing, for good, the detached uploads that keep bytes for a client
// that may come back: the longest untouched first, and only the user's own
// while it is over its share. Those whose stored parts are still being
// written leave memory when that is done. It reports whether need fits
// now. m.mu is held.
func (m *Manager) reclaimLocked(user string, need int64) bool {
	type cand struct {
		u       *upload
		touched time.Time
	}
	ownOnly := m.byUser[user]+need > m.userMemory
	var cands []cand
	for _, u := range m.uploads {
		u.mu.Lock()
		if u.sink == nil && u.status == statusUploading && !u.writing && (!ownOnly || u.owner.User == user) {
			cands = append(cands, cand{u, u.touched})
		}
		u.mu.Unlock()
	}
	slices.SortFunc(cands, func(a, b cand) int { return a.touched.Compare(b.touched) })
	for _, c := range cands {
		if m.fitsLocked(user, need) {
			break
		}
		m.pauseLocked(c.u, "reclaimed for another upload")
	}
	return m.fitsLocked(user, need)
}

// pauseLocked lets go of what u keeps in memory for its client: the part
// being filled, and the client itself, whose next chunk then gets
// CodeUnknownUpload (it resumes from what is stored). Sealed parts are
// still stored. m.mu is held, u.mu is not.
func (m *Manager) pauseLocked(u *upload, why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.status != statusUploading || u.writing {
		return
	}
	u.log.Info("upload paused", "why", why, "received", u.received, "durable", u.durable)
	u.sink = nil
	u.dropLocked(true)
	if u.evictableLocked() {
		m.forgetLocked(u)
	}
}

// pauseIdle pauses the uploads that received nothing for Idle: attached
// ones whose client went quiet, and detached ones whose client did not
// come back in time.
//
// An upload the server holds up is not idle: one whose parts are being
// stored, whose window is full, or whose bytes are all in (it waits for
// its digest or its completion). Its client is waiting for the server.
// A client that is paused hears it (CodeUnknownUpload: resume).
func (m *Manager) pauseIdle() {
	now := m.now()
	type told struct {
		sink Sink
		id   string
	}
	var tell []told
	m.mu.Lock()
	for _, u := range m.uploads {
		u.mu.Lock()
		heldUp := u.working || u.received >= u.durable+m.window(u.partSize) || u.received == u.size
		idle := u.status == statusUploading && !u.writing && now.Sub(u.touched) > m.idle &&
			(u.sink != nil && !heldUp || u.sink == nil && len(u.parts) > 0)
		sink := u.sink
		u.mu.Unlock()
		if idle {
			m.pauseLocked(u, "idle")
			if sink != nil {
				tell = append(tell, told{sink, u.id})
			}
		}
	}
	m.mu.Unlock()
	for _, t := range tell {
		t.sink.Failed(t.id, errorf(CodeUnknownUpload, "upload %s was paused after %v without a chunk; resume it", t.id, m.idle))
	}
}

// recordFailures tries again to record the failures that storage refused
// to record when they happened, and forgets the uploads whose failure is
// recorded.
func (m *Manager) recordFailures(ctx context.Context) {
	m.mu.Lock()
	var pending []*upload
	for _, u := range m.uploads {
		u.mu.Lock()
		if u.unrecorded && !u.working {
			pending = append(pending, u)
		}
		u.mu.Unlock()
	}
	m.mu.Unlock()
	for _, u := range pending {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		u.cleanup(ctx)
		cancel()
		m.evict(u)
	}
}

// PartMemoryInUse reports the part memory that uploads hold now (their
// windows), for metrics and tests.
func (m *Manager) PartMemoryInUse() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reserved
}
