//go:build !windows

package disk

import (
	"errors"
	"os"
	"syscall"
)

// isFull reports whether a write failed for want of room: a full file
// system (ENOSPC), a spent quota (EDQUOT), or a file grown past what the
// file system or the process may write (EFBIG), which no retry mends either.
func isFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// syncDir makes the renames and removals done in dir survive a crash: on
// Unix they are changes to the folder, which fsync of a file does not cover.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
