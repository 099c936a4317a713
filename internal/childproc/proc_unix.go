//go:build unix

package childproc

import (
	"os"
	"syscall"
)

// terminate asks a child to shut down cleanly.
func terminate(p *os.Process) error {
	return p.Signal(syscall.SIGTERM)
}
