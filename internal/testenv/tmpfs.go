package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a new folder and returns the folder;
// it is unmounted when the test ends. It needs Linux and root: elsewhere it
// skips the test, or fails it as Require does. Tests of a full disk use it.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		Require(t, "root on Linux, to mount a tmpfs")
		return ""
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		Require(t, fmt.Sprintf("a tmpfs mount (%v: %s)", err, out))
		return ""
	}
	// Registered after TempDir's cleanup, so it runs first.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}
