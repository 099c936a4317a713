package main

import (
	"fmt"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal: a command writes to tty as it would to a
// person's terminal, and screen collects what that terminal was sent.
type terminal struct {
	tty    *os.File
	screen safeBuffer
	master *os.File
	read   chan struct{}
}

// openTerminal opens a pseudo-terminal, closed when the test ends (or by
// close). It skips the test where the system has none to give.
func openTerminal(t *testing.T) *terminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	// Control, not Fd: Fd would make reads blocking, and close could not
	// end the reader.
	rc, err := master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr == nil {
			n, ioctlErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ioctlErr != nil {
		master.Close()
		t.Skipf("no pseudo-terminal: %v %v", err, ioctlErr)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skipf("no pseudo-terminal: %v", err)
	}
	term := &terminal{tty: tty, master: master, read: make(chan struct{})}
	go func() {
		defer close(term.read)
		_, _ = io.Copy(&term.screen, master) // until tty closes (EIO)
	}()
	t.Cleanup(term.close)
	return term
}

// close closes the terminal once all written to it is on the screen.
// Calling it again does nothing.
func (term *terminal) close() {
	if term.tty == nil {
		return
	}
	term.tty.Close()
	<-term.read
	term.master.Close()
	term.tty = nil
}
