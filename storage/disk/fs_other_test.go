//go:build !windows

package disk

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/ferryhq/ferry/storage"
)

func TestNoRoom(t *testing.T) {
	tests := []struct {
		errno syscall.Errno
		full  bool
	}{
		{syscall.ENOSPC, true},
		{syscall.EDQUOT, true},
		{syscall.EFBIG, true},
		{syscall.EIO, false},
		{syscall.EACCES, false},
		{syscall.ENOENT, false},
	}
	for _, tc := range tests {
		cause := &fs.PathError{Op: "write", Path: "/data/tmp/put-1", Err: tc.errno}
		err := noRoom(cause)
		if errors.Is(err, storage.ErrFull) != tc.full {
			t.Errorf("%v: errors.Is(ErrFull) = %v, want %v", tc.errno, !tc.full, tc.full)
		}
		if !errors.Is(err, tc.errno) || !strings.Contains(err.Error(), tc.errno.Error()) {
			t.Errorf("%v: %q lost the system's error", tc.errno, err)
		}
		if again := noRoom(err); again.Error() != err.Error() {
			t.Errorf("%v: marked twice: %q", tc.errno, again)
		}
	}
	if noRoom(nil) != nil {
		t.Error("noRoom(nil) != nil")
	}
}
