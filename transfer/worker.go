package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// errDetached stops a worker whose upload lost its connection while storage
// fails: rather than hold its buffers, the upload falls back to its durable
// offset and the client resends the rest when it resumes.
var errDetached = errors.New("transfer: upload detached while storage fails")

// work is the upload's storage goroutine. It runs while there are sealed
// parts to store or a completion or failure to record, one part at a time
// and in order, so that durable is always a part boundary.
func (u *upload) work(done chan struct{}) {
	defer u.m.workers.Done()
	defer close(done)
	for {
		u.mu.Lock()
		if u.status != statusUploading || u.ctx.Err() != nil {
			u.settleEarlyLocked()
			u.exitLocked()
			return
		}
		var p *part
		if len(u.parts) > 0 && u.parts[0].sealed {
			p = u.parts[0]
		}
		finish := p == nil && u.finishableLocked()
		if p == nil && !finish {
			u.working = false
			u.mu.Unlock()
			u.m.evict(u)
			return
		}
		u.mu.Unlock()

		var err error
		if p != nil {
			err = u.storePart(p)
		} else {
			err = u.complete()
		}
		if err == nil || u.ctx.Err() != nil {
			continue
		}
		if errors.Is(err, errDetached) {
			u.mu.Lock()
			if u.sink == nil {
				u.settleEarlyLocked()
			}
			// Settling let go of the lock: a client may have resumed, or
			// be sending a chunk, meanwhile. Then the parts stay.
			if u.sink == nil && !u.writing {
				u.working = false
				u.dropLocked(false)
				u.mu.Unlock()
				u.m.evict(u)
				return
			}
			u.mu.Unlock()
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			e = wrapf(err, CodeExpired, "the upload cannot continue")
		}
		u.log.Warn("upload failed", "err", err)
		u.mu.Lock()
		u.failLocked(e, true)
		u.recordFailure = true
		u.mu.Unlock()
		// Parts being stored ahead stop: the upload is over. (The
		// cleanup uses a context of its own.)
		u.cancel()
	}
}

// exitLocked ends the worker of an upload that is over or being stopped,
// recording a failure if that was left to it. It unlocks u.mu.
func (u *upload) exitLocked() {
	cleanup := u.status == statusFailed && u.recordFailure
	u.recordFailure = false
	notify := cleanup && u.notify
	sink, e := u.sink, u.failure
	u.working = false
	u.dropLocked(false)
	u.mu.Unlock()
	if cleanup {
		ctx, cancel := context.WithTimeout(u.m.ctx, cleanupTimeout)
		u.cleanup(ctx)
		cancel()
	}
	if notify && sink != nil {
		sink.Failed(u.id, e)
	}
	u.m.evict(u)
}

// retry runs op until it succeeds, the upload's context ends, or op fails
// for good. Every attempt ends after StorageTimeout; one that takes longer
// than SlowStorage, or fails, tells the sink once per outage that storage
// is unavailable, and the window holds the client back meanwhile. A full
// store ends the upload. With giveUp, a detached upload stops trying
// (errDetached) instead of holding its buffers.
func (u *upload) retry(what string, giveUp bool, op func(context.Context) error) error {
	delay := u.m.retryMin
	for {
		err := u.attempt(op)
		if err == nil {
			return nil
		}
		if u.ctx.Err() != nil {
			return u.ctx.Err()
		}
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return wrapf(err, CodeExpired, "the stored parts of the upload are gone")
		case errors.Is(err, storage.ErrInvalidKey):
			// Open checked the key, so only an unusual store gets here.
			return wrapf(err, CodeCanceled, "the storage refuses the file's key")
		case errors.Is(err, storage.ErrFull):
			return wrapf(err, CodeStorageFull, "the storage is full; the file cannot be kept")
		}
		u.log.Warn("storage failed; retrying", "op", what, "err", err, "retry_in", delay)
		u.mu.Lock()
		sink := u.sink
		u.mu.Unlock()
		if sink == nil && giveUp {
			return errDetached
		}
		u.storageUnavailable(err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-u.ctx.Done():
			t.Stop()
			return u.ctx.Err()
		}
		delay = min(2*delay, u.m.retryMax)
	}
}

// attempt runs op once, within StorageTimeout, telling the sink when it
// takes longer than SlowStorage: a store that hangs must not look like one
// that is merely busy.
func (u *upload) attempt(op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(u.ctx, u.m.storageWait)
	defer cancel()
	var answered atomic.Bool
	slow := time.AfterFunc(u.m.slowStorage, func() {
		if !answered.Load() {
			u.storageUnavailable(errors.New("no answer yet"))
		}
	})
	defer slow.Stop()
	err := op(ctx)
	answered.Store(true)
	if err != nil && ctx.Err() != nil && u.ctx.Err() == nil {
		err = fmt.Errorf("storage did not answer within %v: %w", u.m.storageWait, err)
	}
	return err
}

// storageUnavailable tells the sink, once per outage, that storage fails.
func (u *upload) storageUnavailable(cause error) {
	u.mu.Lock()
	sink := u.sink
	report := sink != nil && !u.storageDown && u.status == statusUploading
	u.storageDown = u.storageDown || report
	u.mu.Unlock()
	if report {
		sink.Failed(u.id, wrapf(cause, CodeStorageUnavailable,
			"storage is unavailable; the upload continues when it is back"))
	}
}

// metaLocked is the stored object's metadata; sum is set at completion.
func (u *upload) metaLocked(sum string) storage.Meta {
	user := map[string]string{
		"uploader":      metaValue(u.owner.User),
		"uploader-name": metaValue(u.owner.Name),
		"room":          metaValue(u.room),
		"original-name": metaValue(u.name),
	}
	if sum != "" {
		user["sha256"] = sum
	}
	return storage.Meta{ContentType: u.ctype, User: user}
}

func (u *upload) saveManifest(giveUp bool, mf *manifest) error {
	return u.retry("save manifest", giveUp, func(ctx context.Context) error {
		return u.m.saveManifest(ctx, mf)
	})
}

// startMultipart creates the multipart upload once the type is known, and
// records its id.
func (u *upload) startMultipart() error {
	u.mu.Lock()
	// A declared SHA-256 goes into the metadata now: it is checked before
	// completion, and when the metadata does not change at completion the
	// store need not copy the whole object to replace it.
	sum := u.sha
	if u.later {
		sum = "" // as completion will have it: see complete
	}
	meta := u.metaLocked(sum)
	u.mu.Unlock()
	var mp storage.Multipart
	err := u.retry("start multipart upload", true, func(ctx context.Context) error {
		var err error
		mp, err = u.m.store.NewMultipart(ctx, u.key, meta)
		return err
	})
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.mp = mp
	mf := u.manifestLocked(u.durable, u.hash)
	u.mu.Unlock()
	return u.saveManifest(true, mf)
}

// storePart stores the first sealed part, then records the new durable
// offset and hash state before telling the sink. Sealed parts after it are
// stored ahead, each by a goroutine of its own (see storeAheadLocked), so
// that several requests are in flight at once, as minio-go's PutObject
// sends four parts at once; their results are taken here in order, so
// that durable stays a part boundary and the hash runs over the parts in
// order.
func (u *upload) storePart(p *part) error {
	if u.mp == nil {
		if err := u.startMultipart(); err != nil {
			return err
		}
	}
	u.mu.Lock()
	u.storeAheadLocked()
	early := p.early
	u.mu.Unlock()
	size := int64(len(p.buf))
	var r stored
	if early != nil {
		err := (<-early).err
		u.mu.Lock()
		p.early = nil
		hashed := p.hashed
		p.hashed = nil
		u.mu.Unlock()
		switch {
		case err != nil && hashed != nil:
			<-hashed // it reads the buffer: let it finish first
		case err == nil:
			if hashed == nil {
				hashed = u.hashAfter(p, u.hash)
			}
			if r = <-hashed; r.err != nil {
				return r.err
			}
		}
	}
	if r.state == nil { // not stored ahead, or that failed: store it now
		r = u.putPart(p, u.hash)
	}
	if r.err != nil {
		return r.err
	}

	u.mu.Lock()
	crc := crc32Combine(u.fileCRC, p.crc, size)
	mf := u.manifestLocked(u.durable+size, r.state)
	mf.FileCRC = crc
	u.storeAheadLocked()
	// The next part's hash starts from this one's: it runs while the record
	// is saved, rather than after, on the way to the next durable offset.
	if len(u.parts) > 1 && u.parts[1].sealed && u.parts[1].early != nil && u.parts[1].hashed == nil {
		u.parts[1].hashed = u.hashAfter(u.parts[1], r.state)
	}
	u.mu.Unlock()
	if err := u.saveManifest(true, mf); err != nil {
		return err
	}

	u.mu.Lock()
	u.durable += size
	u.hash, u.fileCRC = r.state, crc
	n := copy(u.parts, u.parts[1:])
	u.parts[n] = nil
	u.parts = u.parts[:n]
	u.putBuf(p.buf)
	u.touched = u.m.now()
	u.storageDown = false
	sink, received, durable := u.sink, u.received, u.durable
	u.mu.Unlock()
	if sink != nil {
		sink.Progress(u.id, received, durable)
	}
	return nil
}

// storeAheadLocked starts storing every sealed part after the first that is
// not being stored yet. Only the worker's upload does this, while the
// worker runs: sealed parts are kept until it exits, and it waits for
// these stores before it does (settleEarlyLocked). u.mu is held.
func (u *upload) storeAheadLocked() {
	if !u.working || u.settling || u.mp == nil || u.status != statusUploading || u.ctx.Err() != nil {
		return
	}
	for _, q := range u.parts[min(1, len(u.parts)):] {
		if !q.sealed || q.early != nil {
			continue
		}
		q.early = make(chan stored, 1)
		go func(q *part, done chan stored) {
			done <- stored{err: u.retry("store part", true, func(ctx context.Context) error {
				return u.timedPutPart(ctx, q)
			})}
		}(q, q.early)
	}
}

// settleEarlyLocked waits, with u.mu released meanwhile, for every part
// being stored ahead, before their buffers may be dropped.
func (u *upload) settleEarlyLocked() {
	// No part starts to be stored ahead while the lock is let go here.
	u.settling = true
	defer func() { u.settling = false }()
	var early []*part
	for _, p := range u.parts {
		if p.early != nil {
			early = append(early, p)
		}
	}
	if len(early) == 0 {
		return
	}
	u.mu.Unlock()
	for _, p := range early {
		<-p.early
		if p.hashed != nil {
			<-p.hashed
		}
	}
	u.mu.Lock()
	for _, p := range early {
		p.early, p.hashed = nil, nil
	}
}

// hashAfter computes, on a goroutine of its own, the file's hash state
// after part p from base, the state before it.
func (u *upload) hashAfter(p *part, base []byte) chan stored {
	c := make(chan stored, 1)
	go func() {
		h, err := restoreHash(base)
		if err != nil {
			c <- stored{err: err}
			return
		}
		h.Write(p.buf)
		c <- stored{state: marshalHash(h)}
	}()
	return c
}

// putPart stores p and returns the file's hash state after it, computed from
// base while the part is sent.
func (u *upload) putPart(p *part, base []byte) stored {
	hc := make(chan stored, 1)
	go func() {
		h, err := restoreHash(base)
		if err != nil {
			hc <- stored{err: err}
			return
		}
		h.Write(p.buf)
		hc <- stored{state: marshalHash(h)}
	}()
	err := u.retry("store part", true, func(ctx context.Context) error {
		return u.timedPutPart(ctx, p)
	})
	hr := <-hc
	if err != nil {
		return stored{err: err}
	}
	return hr
}

func restoreHash(state []byte) (hash.Hash, error) {
	h := sha256.New()
	if state == nil {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("restore SHA-256 state: %w", err)
	}
	return h, nil
}

func marshalHash(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(err) // crypto/sha256 always marshals
	}
	return b
}

// timedPutPart stores part p, with the CRC32C computed as its bytes
// arrived where storage takes it, and reports how long the store took
// (Events.PartStored).
func (u *upload) timedPutPart(ctx context.Context, p *part) error {
	start := time.Now()
	var err error
	if cp, ok := u.mp.(storage.CRC32CPartPutter); ok {
		err = cp.PutPartCRC32C(ctx, p.num, bytes.NewReader(p.buf), int64(len(p.buf)), p.crc)
	} else {
		err = u.mp.PutPart(ctx, p.num, bytes.NewReader(p.buf), int64(len(p.buf)))
	}
	if err == nil {
		u.m.events.PartStored(time.Since(start))
	}
	return err
}
