package server

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is how many buffers one sendmsg takes (Linux's IOV_MAX).
const maxIovecs = 1024

// iovecs is a flusher's reusable vector for sendmsg.
type iovecs []unix.Iovec

// write writes bufs to t's socket with one sendmsg that does not wait: it
// returns how much the socket took, and errWouldBlock when that was nothing.
// The caller has put t in writeFlushing, so t.fd stays open (see
// transport.fd). The call goes to the descriptor directly rather than
// through the net package, whose locks and poller bookkeeping cost about
// as much as the system call's own entry, and as a raw system call: it
// never waits, so the runtime need not prepare to run other goroutines
// meanwhile.
func (v *iovecs) write(t *transport, bufs [][]byte) (int, error) {
	if t.portable() {
		return 0, errWouldBlock // the writer goroutine writes
	}
	if len(bufs) > maxIovecs {
		bufs = bufs[:maxIovecs]
	}
	iov := (*v)[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		e := unix.Iovec{Base: &b[0]}
		e.SetLen(len(b))
		iov = append(iov, e)
	}
	*v = iov
	if len(iov) == 0 {
		return 0, nil
	}
	msg := unix.Msghdr{Iov: &iov[0]}
	msg.SetIovlen(len(iov))
	r, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(t.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	clear(iov) // let the frames go
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return 0, errWouldBlock
	case errno != 0:
		return 0, errno
	}
	return int(r), nil
}
