//go:build !linux && !darwin && !freebsd && !dragonfly

package disk

import (
	"context"
	"errors"
	"fmt"
)

// Free would return the bytes the store's folder can still take, but this
// platform's build does not ask the system: it fails with
// errors.ErrUnsupported, which callers treat as "unknown", like any error.
func (s *Store) Free(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("storage/disk: free space of %s: %w", s.root, errors.ErrUnsupported)
}
