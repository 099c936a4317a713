package childproc

import "os"

// terminate: Windows has no SIGTERM; the child is killed.
func terminate(p *os.Process) error {
	return p.Kill()
}
