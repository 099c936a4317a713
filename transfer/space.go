package transfer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// checkSpace refuses an upload of size bytes that a store which knows its
// free space cannot take, counting what the uploads in progress still need.
// A store that cannot tell (S3) or fails to is not held against the upload:
// a full store is then found out when it refuses a part.
func (m *Manager) checkSpace(ctx context.Context, size int64) error {
	sr, ok := m.store.(storage.SpaceReporter)
	if !ok {
		return nil
	}
	free, err := sr.Free(ctx)
	if err != nil {
		m.log.Debug("free space unknown", "err", err)
		return nil
	}
	m.mu.Lock()
	pending := int64(0)
	for _, u := range m.uploads {
		u.mu.Lock()
		if u.status == statusUploading {
			pending += u.size - u.durable
		}
		u.mu.Unlock()
	}
	m.mu.Unlock()
	if size+pending > free {
		return errorf(CodeStorageFull, "the storage has %s free, and this file needs %s besides the %s that uploads in progress still need",
			fmtBytes(free), fmtBytes(size), fmtBytes(pending))
	}
	return nil
}

// readyKey is what Ready asks storage about: it need not exist.
const readyKey = ".ferry/ready"

// readyTimeout bounds Ready's storage request.
const readyTimeout = 2 * time.Second

// Ready checks that storage answers a small request within a short time,
// and, when it can tell, that it has room left. The error's code is
// CodeStorageUnavailable or CodeStorageFull.
func (m *Manager) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := m.store.Stat(ctx, readyKey); err != nil && !errors.Is(err, storage.ErrNotFound) {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v: %w", readyTimeout, err)
		}
		return wrapf(err, CodeStorageUnavailable, "storage does not answer")
	}
	if sr, ok := m.store.(storage.SpaceReporter); ok {
		if free, err := sr.Free(ctx); err == nil && free < storage.MinPartSize {
			return errorf(CodeStorageFull, "the storage has only %s free", fmtBytes(free))
		}
	}
	return nil
}

// fmtBytes writes n in binary units, as people read sizes.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit && exp < 4; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
