package transfer

import (
	"context"
	"errors"

	"github.com/ferryhq/ferry/storage"
)

// Status reports an upload's state, from memory or from its manifest.
func (m *Manager) Status(ctx context.Context, uploadID, user string) (State, error) {
	if !validID(uploadID, uploadPrefix) {
		return State{}, errorf(CodeUnknownUpload, "no upload %q", uploadID)
	}
	m.mu.Lock()
	u := m.uploads[uploadID]
	m.mu.Unlock()
	if u != nil {
		if u.owner.User != user {
			return State{}, errorf(CodeForbidden, "upload %s belongs to someone else", uploadID)
		}
		return u.state(), nil
	}
	mf, err := m.ownManifest(ctx, uploadID, user)
	if err != nil {
		return State{}, err
	}
	st := mf.state()
	if mf.Status == statusComplete {
		f, err := m.File(ctx, mf.FileID)
		if err != nil {
			return State{}, err
		}
		st.File = &f
	}
	return st, nil
}

// Cancel ends an upload and discards what was stored of it. Canceling a
// finished upload fails with CodeBadRequest; canceling a failed one does
// nothing.
func (m *Manager) Cancel(ctx context.Context, uploadID, user string) error {
	if !validID(uploadID, uploadPrefix) {
		return errorf(CodeUnknownUpload, "no upload %q", uploadID)
	}
	release, err := m.claim(ctx, uploadID)
	if err != nil {
		return err
	}
	defer release()
	m.mu.Lock()
	u := m.uploads[uploadID]
	m.mu.Unlock()
	if u != nil {
		if u.owner.User != user {
			return errorf(CodeForbidden, "upload %s belongs to someone else", uploadID)
		}
		err := u.stop(ctx, errorf(CodeCanceled, "the upload was canceled"), false)
		if err == nil {
			m.quota.give(user, u.size, m.now())
		}
		return err
	}
	// Not while another node writes it.
	l, err := m.lockUpload(ctx, uploadID)
	if err != nil {
		return err
	}
	defer l.release()
	mf, err := m.ownManifest(ctx, uploadID, user)
	if err != nil {
		return err
	}
	switch mf.Status {
	case statusComplete:
		return errorf(CodeBadRequest, "upload %s is already complete", uploadID)
	case statusFailed:
		return nil
	}
	err = m.discard(ctx, mf)
	if err == nil {
		m.quota.give(user, mf.Size, m.now())
	}
	return err
}

// ownManifest loads the manifest of an upload of user's: CodeForbidden
// when it belongs to someone else.
func (m *Manager) ownManifest(ctx context.Context, id, user string) (*manifest, error) {
	mf, err := m.loadManifest(ctx, id)
	if err != nil {
		return nil, err
	}
	if mf.User != user {
		return nil, errorf(CodeForbidden, "upload %s belongs to someone else", id)
	}
	return mf, nil
}

// discard aborts a stored upload that is not in memory and deletes its
// manifest.
func (m *Manager) discard(ctx context.Context, mf *manifest) error {
	if mf.Status == statusUploading && mf.Multipart != "" {
		mp, err := m.store.ResumeMultipart(ctx, mf.Key, mf.Multipart)
		if err == nil {
			err = mp.Abort(ctx)
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return wrapf(err, CodeStorageUnavailable, "cannot discard upload %s", mf.ID)
		}
	}
	if err := m.store.Delete(ctx, manifestKey(mf.ID)); err != nil {
		return wrapf(err, CodeStorageUnavailable, "cannot discard upload %s", mf.ID)
	}
	return nil
}

// Detach tells the manager that sink's connection went away. Its uploads
// pause and stay resumable from another connection: full parts are still
// stored, and the bytes of a part not yet full wait for the client for
// Config.Idle (unless their memory is needed sooner).
func (m *Manager) Detach(sink Sink) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.uploads {
		u.mu.Lock()
		if u.sink == sink {
			u.sink = nil
			u.detachLocked()
			if u.evictableLocked() {
				m.forgetLocked(u)
			}
		}
		u.mu.Unlock()
	}
}

// evict forgets u if it has nothing left to do in memory: it is finished,
// or detached with nothing being written or stored.
func (m *Manager) evict(u *upload) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.evictableLocked() && m.uploads[u.id] == u {
		m.forgetLocked(u)
	}
}

// claim makes the caller the only one loading or removing upload id in
// storage, waiting for a previous claimant if needed.
func (m *Manager) claim(ctx context.Context, id string) (release func(), err error) {
	for {
		m.mu.Lock()
		busy, ok := m.claims[id]
		if !ok {
			ch := make(chan struct{})
			m.claims[id] = ch
			m.mu.Unlock()
			return func() {
				m.mu.Lock()
				delete(m.claims, id)
				m.mu.Unlock()
				close(ch)
			}, nil
		}
		m.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, wrapf(ctx.Err(), CodeStorageUnavailable, "upload %s is busy", id)
		}
	}
}
