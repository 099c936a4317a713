//go:build unix

package bench

import "syscall"

// RaiseOpenFiles raises this process's soft limit on open files to the hard
// limit and returns the soft limit in force. Setting it explicitly (rather
// than relying on the Go runtime, which raises it for its own process only)
// makes child processes such as a server started by StartServer inherit it
// too. Where the system refuses (macOS caps the soft limit below an
// unlimited hard limit), the limit stays as it was.
func RaiseOpenFiles() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	want := lim
	want.Cur = want.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		lim = want
	}
	// The field is signed on some systems (FreeBSD).
	return uint64(lim.Cur), nil
}
