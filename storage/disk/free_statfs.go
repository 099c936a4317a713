//go:build linux || darwin || freebsd || dragonfly

package disk

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// Free returns the bytes that the store's folder can still take, as statfs
// counts them for a process without root's reserve. It is a hint, true when
// asked: other writers share the disk. On platforms where it is not known it
// fails with errors.ErrUnsupported; callers treat any error as "unknown".
func (s *Store) Free(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("storage/disk: free space of %s: %w", s.root, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
