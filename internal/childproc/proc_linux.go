package childproc

import "syscall"

// childAttrs makes the kernel kill the child when its parent dies, so a crashed
// or interrupted parent leaves nothing running.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
