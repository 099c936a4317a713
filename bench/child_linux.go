package bench

import "syscall"

// childProcAttr makes the kernel kill the server if the generator dies
// without cleaning up, so that no measured server outlives its bench, and
// puts it in its own process group, so that a Ctrl-C in the terminal reaches
// the bench alone, which then stops the server in order.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
