package disk

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isFull reports whether a write failed for want of room: a full volume, a
// spent quota, or a file grown past what the volume takes (FAT's 4 GiB).
func isFull(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) ||
		errors.Is(err, windows.ERROR_HANDLE_DISK_FULL) ||
		errors.Is(err, windows.ERROR_DISK_QUOTA_EXCEEDED) ||
		errors.Is(err, windows.ERROR_FILE_TOO_LARGE)
}

// syncDir does nothing: Windows offers no way to flush a folder, and NTFS
// journals renames and removals itself.
func syncDir(string) error { return nil }
