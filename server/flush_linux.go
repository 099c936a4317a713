package server

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is how many buffers one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// iovecs is a flusher's reusable vector for writev.
type iovecs []unix.Iovec

// write writes bufs to c's socket with one writev that does not wait: it
// returns how much the socket took, and errWouldBlock when that was nothing.
func (v *iovecs) write(c *conn, bufs [][]byte) (int, error) {
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
	var n int
	var errno unix.Errno
	err := c.raw.Write(func(fd uintptr) bool {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		n, errno = int(r), e
		return true // never wait for the socket here
	})
	clear(iov) // let the frames go
	switch {
	case err != nil:
		return 0, err
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return 0, errWouldBlock
	case errno != 0:
		return 0, errno
	}
	return n, nil
}
