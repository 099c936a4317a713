package bench

import "syscall"

// tmpfsMagic is the f_type statfs reports for tmpfs (linux/magic.h).
const tmpfsMagic = 0x01021994

// inMemoryFS reports whether dir is on tmpfs, where a file "on disk" is in
// memory only and reading it costs less than reading a user's file would.
func inMemoryFS(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == tmpfsMagic
}

// settle writes dirty pages back before a run, so that one run's write-back
// (MinIO's data, the test file) is not charged to the next. It drops nothing
// from the page cache: both sides read the same cached file.
func settle() { syscall.Sync() }
