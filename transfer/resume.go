package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/ferryhq/ferry/storage"
)

// openEmpty stores an empty file at once: there is nothing to send, so the
// grant carries the file, and no manifest is needed.
func (m *Manager) openEmpty(ctx context.Context, u *upload, req OpenRequest, sink Sink) (Grant, error) {
	defer u.cancel() // it never runs a worker
	ctype, err := m.policy.classify(nil, u.declared, u.name, true)
	if err != nil {
		return Grant{}, err
	}
	sum := sha256.Sum256(nil)
	hexSum := hex.EncodeToString(sum[:])
	if u.sha != "" && u.sha != hexSum {
		return Grant{}, errorf(CodeChecksumMismatch, "the SHA-256 of an empty file is %s, not %s", hexSum, u.sha)
	}
	u.ctype = ctype
	meta := u.metaLocked(hexSum)
	if err := m.store.Put(ctx, u.key, bytes.NewReader(nil), 0, meta); err != nil {
		return Grant{}, storageError(err, "cannot store the file")
	}
	f := File{ID: u.fileID, Room: u.room, Name: u.name, Type: ctype, SHA256: hexSum,
		User: u.owner.User, UserName: u.owner.Name, Time: m.now().UTC().Round(0), Key: u.key}
	if err := putJSON(ctx, m.store, recordKey(f.ID), f); err != nil {
		_ = m.store.Delete(ctx, u.key)
		return Grant{}, storageError(err, "cannot store the file")
	}
	m.events.Announce(ctx, f)
	sink.Completed(u.id, f)
	g := m.grant(u, 0, req.ChunkSize)
	g.File = &f
	return g, nil
}

// resume reattaches an upload to sink: from memory if it is still there,
// otherwise from its manifest.
func (m *Manager) resume(ctx context.Context, req OpenRequest, sink Sink) (Grant, error) {
	id := req.Resume
	if !validID(id, uploadPrefix) {
		return Grant{}, errorf(CodeUnknownUpload, "no upload %q", id)
	}
	release, err := m.claim(ctx, id)
	if err != nil {
		return Grant{}, err
	}
	defer release()

	m.mu.Lock()
	u := m.uploads[id]
	m.mu.Unlock()
	if u != nil {
		return m.reattach(u, req, sink)
	}
	// Another node may hold it: the manifest is read once this node has
	// the lock, when it is final.
	l, err := m.lockUpload(ctx, id)
	if err != nil {
		return Grant{}, err
	}
	kept := false // once bound, the upload releases it
	defer func() {
		if !kept {
			l.release()
		}
	}()
	mf, err := m.loadManifest(ctx, id)
	if err != nil {
		return Grant{}, err
	}
	if err := checkResume(mf, req); err != nil {
		return Grant{}, err
	}
	switch mf.Status {
	case statusComplete:
		f, err := m.File(ctx, mf.FileID)
		if err != nil {
			return Grant{}, err
		}
		sink.Completed(id, f)
		return Grant{Upload: id, Offset: mf.Size, ChunkSize: m.grantChunk(req.ChunkSize),
			Window: m.window(mf.PartSize), Size: mf.Size, File: &f}, nil
	case statusFailed:
		return Grant{}, mf.terminalError()
	}
	if m.now().Sub(mf.Updated) > m.ttl {
		return Grant{}, errorf(CodeExpired, "upload %s has expired", id)
	}
	if err := m.checkSinkLimit(sink); err != nil {
		return Grant{}, err
	}
	u, err = m.restore(ctx, mf, req.Owner.Conn)
	if err != nil {
		return Grant{}, err
	}
	if err := m.reserve(u); err != nil {
		u.cancel()
		return Grant{}, err
	}
	l.bind(u)
	kept = true
	if err := m.register(u, sink); err != nil {
		u.abandon()
		return Grant{}, err
	}
	u.mu.Lock()
	offset := u.received
	if u.finishableLocked() && !u.working {
		// Every byte was stored before the restart: only the completion
		// is left.
		m.startWorker(u)
	}
	u.mu.Unlock()
	u.log.Info("upload resumed from storage", "offset", offset)
	return m.grant(u, offset, req.ChunkSize), nil
}

// checkResume refuses a resume by someone else, or one that describes a
// different file.
func checkResume(mf *manifest, req OpenRequest) error {
	if mf.User != req.Owner.User {
		return errorf(CodeForbidden, "upload %s belongs to someone else", mf.ID)
	}
	if req.Size != 0 && req.Size != mf.Size || req.SHA256 != "" && !strings.EqualFold(req.SHA256, mf.SHA256) {
		return errorf(CodeBadRequest, "upload %s is a different file", mf.ID)
	}
	return nil
}

// reattach attaches an upload still in memory to sink. Every byte the server
// received whole is kept: the client continues right after the last one.
func (m *Manager) reattach(u *upload, req OpenRequest, sink Sink) (Grant, error) {
	u.mu.Lock()
	mf := &manifest{ID: u.id, User: u.owner.User, Size: u.size, SHA256: u.sha}
	u.mu.Unlock()
	if err := checkResume(mf, req); err != nil {
		return Grant{}, err
	}
	g, file, err := m.attach(u, req, sink)
	if file != nil {
		sink.Completed(u.id, *file)
	}
	return g, err
}

func (m *Manager) attach(u *upload, req OpenRequest, sink Sink) (Grant, *File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u.mu.Lock()
	attached := u.sink == sink
	u.mu.Unlock()
	var limit error
	if !attached {
		limit = m.sinkLimitLocked(sink)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.status == statusFailed:
		return Grant{}, nil, u.failure
	case u.status == statusComplete:
		g := m.grant(u, u.size, req.ChunkSize)
		g.File = u.file
		return g, u.file, nil
	case m.uploads[u.id] != u:
		// It was evicted while we looked.
		return Grant{}, nil, errorf(CodeUnknownUpload, "upload %s changed; resume it again", u.id)
	case limit != nil:
		return Grant{}, nil, limit
	}
	// Being in memory, it holds its window.
	if old, ok := u.sink.(Interrupter); ok && u.writing && u.sink != sink {
		// Not under the locks: the sink may do what it likes.
		defer old.Interrupt(u.id)
	}
	u.sink = sink
	u.touched = m.now()
	u.detachLocked()
	return m.grant(u, u.received, req.ChunkSize), nil, nil
}

// restore rebuilds an upload from its manifest. What storage holds decides
// the offset: the parts the manifest counts as durable must all be there,
// or the upload starts over from 0 in the same multipart upload.
func (m *Manager) restore(ctx context.Context, mf *manifest, conn string) (*upload, error) {
	u := m.makeUpload(mf, conn)
	fresh := func(reason string) {
		u.log.Warn("resumed upload starts over", "reason", reason, "durable", mf.Durable)
		u.durable, u.hash, u.fileCRC = 0, nil, 0
	}
	u.durable = mf.Durable
	u.hash, u.fileCRC = mf.Hash, mf.FileCRC
	if mf.Durable > 0 {
		u.ctype = mf.Type
	}
	if _, err := restoreHash(mf.Hash); err != nil || (mf.Durable > 0) != (mf.Hash != nil) ||
		mf.Durable > 0 && mf.Type == "" || mf.Durable < 0 || mf.Durable > mf.Size {
		fresh("inconsistent manifest")
	}
	switch {
	case mf.PartSize != m.partSize && mf.PartSize != m.bigPartSize:
		// Parts of another size cannot be mixed in: start a new multipart
		// upload, so that no stale part joins the file.
		if mf.Multipart != "" {
			if mp, err := m.store.ResumeMultipart(ctx, mf.Key, mf.Multipart); err == nil {
				_ = mp.Abort(ctx)
			}
		}
		u.partSize = m.partSize
		fresh("part size changed")
	case mf.Multipart != "":
		mp, err := m.store.ResumeMultipart(ctx, mf.Key, mf.Multipart)
		switch {
		case errors.Is(err, storage.ErrNotFound) && u.durable == u.size:
			// Completed before the manifest said so: complete() checks
			// the object.
		case errors.Is(err, storage.ErrNotFound):
			fresh("multipart upload gone")
		case err != nil:
			u.cancel()
			return nil, wrapf(err, CodeStorageUnavailable, "cannot resume upload %s", mf.ID)
		default:
			parts, err := mp.Parts(ctx)
			if err != nil {
				u.cancel()
				return nil, wrapf(err, CodeStorageUnavailable, "cannot resume upload %s", mf.ID)
			}
			u.mp = mp
			if !u.partsCover(parts, u.durable) {
				fresh("stored parts do not match")
			}
		}
	case u.durable != 0:
		fresh("no multipart upload")
	}
	if u.durable == 0 {
		u.ctype = ""
	}
	u.received = u.durable
	return u, nil
}

// partsCover reports whether parts holds every part before offset durable,
// each of its full length.
func (u *upload) partsCover(parts []storage.Part, durable int64) bool {
	byNum := make(map[int]int64, len(parts))
	for _, p := range parts {
		byNum[p.Number] = p.Size
	}
	for num := 1; int64(num-1)*int64(u.partSize) < durable; num++ {
		if size, ok := byNum[num]; !ok || size != int64(u.partLen(num)) {
			return false
		}
	}
	return true
}
