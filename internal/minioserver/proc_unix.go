//go:build unix

package minioserver

import (
	"os"
	"syscall"
)

// terminate asks a child to shut down cleanly.
func terminate(p *os.Process) error {
	return p.Signal(syscall.SIGTERM)
}
