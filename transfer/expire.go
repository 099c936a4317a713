package transfer

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// Run sweeps expired uploads now and then every min(TTL/10, 1h), and pauses
// idle ones every Idle/4 (at most every 10s). It returns nil when ctx ends or
// Shutdown is called; sweep errors are logged, and the next sweep tries
// again.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(max(min(m.ttl/10, time.Hour), time.Millisecond))
	defer t.Stop()
	idle := time.NewTicker(max(min(m.idle/4, 10*time.Second), time.Millisecond))
	defer idle.Stop()
	for {
		if err := m.Expire(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("expiry sweep failed", "err", err)
		}
		for expire := false; !expire; {
			select {
			case <-ctx.Done():
				return nil
			case <-m.closing:
				return nil
			case <-idle.C:
				m.pauseIdle()
				m.recordFailures(ctx)
			case <-t.C:
				expire = true
			}
		}
	}
}

// Expire ends the uploads nobody touched for TTL: open ones in memory
// (their sink hears CodeExpired) and those known only by their manifest. Their
// multipart uploads are aborted and their manifests deleted, as are the
// manifests of uploads that finished or failed more than TTL ago. When the
// store can list multipart uploads, it also aborts those under rooms/ older
// than TTL that no manifest refers to, left by a crash between starting one
// and recording it.
func (m *Manager) Expire(ctx context.Context) error {
	now := m.now()
	var errs []error
	inUse := make(map[string]bool) // multipart ids still referenced

	m.mu.Lock()
	open := make([]*upload, 0, len(m.uploads))
	for _, u := range m.uploads {
		open = append(open, u)
	}
	m.mu.Unlock()
	for _, u := range open {
		u.mu.Lock()
		idle := u.status == statusUploading && now.Sub(u.touched) > m.ttl
		u.mu.Unlock()
		if idle {
			u.log.Info("upload expired")
			errs = append(errs, u.stop(ctx, errorf(CodeExpired, "the upload was idle for more than %v", m.ttl), true))
		}
	}

	var ids []string
	err := m.store.List(ctx, uploadsPrefix, func(info storage.Info) error {
		id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, uploadsPrefix), ".json")
		if ok && validID(id, uploadPrefix) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range ids {
		if err := m.expireManifest(ctx, id, now, inUse); err != nil {
			errs = append(errs, err)
		}
	}

	lister, ok := m.store.(storage.MultipartLister)
	if !ok {
		return errors.Join(errs...)
	}
	m.mu.Lock()
	for _, u := range m.uploads {
		u.mu.Lock()
		if u.mp != nil {
			inUse[u.mp.ID()] = true
		}
		u.mu.Unlock()
	}
	m.mu.Unlock()
	type orphan struct{ key, id string }
	var orphans []orphan
	err = lister.ListMultipart(ctx, "rooms/", func(key, uploadID string, started time.Time) error {
		if !inUse[uploadID] && now.Sub(started) > m.ttl {
			orphans = append(orphans, orphan{key, uploadID})
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, o := range orphans {
		mp, err := m.store.ResumeMultipart(ctx, o.key, o.id)
		if err == nil {
			err = mp.Abort(ctx)
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		m.log.Info("aborted an orphan multipart upload", "key", o.key)
	}
	return errors.Join(errs...)
}

// expireManifest removes the manifest of upload id, and its multipart
// upload, if nobody touched it for TTL. Multipart ids it keeps go in inUse.
func (m *Manager) expireManifest(ctx context.Context, id string, now time.Time, inUse map[string]bool) error {
	if m.isOpen(id) {
		return nil // the loop over open uploads decided
	}
	mf, err := m.loadManifest(ctx, id)
	if err != nil {
		if ErrorCode(err) == CodeUnknownUpload {
			return nil
		}
		return err
	}
	if now.Sub(mf.Updated) <= m.ttl {
		if mf.Multipart != "" {
			inUse[mf.Multipart] = true
		}
		return nil
	}
	release, err := m.claim(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	if m.isOpen(id) {
		return nil // resumed meanwhile
	}
	// Nor while another node has it: it decides.
	l, err := m.lockUpload(ctx, id)
	if ErrorCode(err) == CodeBusy {
		return nil
	} else if err != nil {
		return err
	}
	defer l.release()
	// Read it again: a resume may have moved it on before we claimed it.
	mf, err = m.loadManifest(ctx, id)
	switch {
	case ErrorCode(err) == CodeUnknownUpload:
		return nil
	case err != nil:
		return err
	case now.Sub(mf.Updated) <= m.ttl:
		if mf.Multipart != "" {
			inUse[mf.Multipart] = true
		}
		return nil
	}
	m.log.Info("upload manifest expired", "upload", id, "status", mf.Status)
	return m.discard(ctx, mf)
}

// isOpen reports whether upload id is in memory and not finished.
func (m *Manager) isOpen(id string) bool {
	m.mu.Lock()
	u := m.uploads[id]
	m.mu.Unlock()
	if u == nil {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.status == statusUploading
}
