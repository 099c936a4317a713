package testenv

import "syscall"

// childAttrs makes the kernel kill the child when the test binary dies, so a
// crashed or interrupted `go test` leaves no MinIO running.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
