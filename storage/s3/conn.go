package s3

import (
	"context"
	"errors"
	"io"
	"net"
)

// errBodyTooLong is what a request body that holds more than its declared
// length gets; net/http would refuse it too, after reading it all.
var errBodyTooLong = errors.New("storage/s3: request body longer than its Content-Length")

// sendConn is a connection to the service that sends a request body held
// in memory in one write. net/http sends a body of known length as an
// io.LimitedReader through the connection's ReadFrom, which for a TCP
// connection copies it into a 32 KiB buffer and writes that, 512 times for
// a 16 MiB part: a pass over every byte and a system call per 32 KiB that
// the upload does not need, since the part is in memory already. A body
// that can write itself (io.WriterTo: a part, through sectionSeeker) is
// written straight to the socket instead.
type sendConn struct{ net.Conn }

// ReadFrom sends r, which is at most the rest of a request's body.
func (c sendConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if wt, ok := lr.R.(io.WriterTo); ok {
			w := &limitedWriter{w: c.Conn, left: lr.N}
			n, err := wt.WriteTo(w)
			lr.N -= n
			return n, err
		}
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r) // splice and sendfile where they apply
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// limitedWriter writes at most left bytes to w; past that, a write is cut
// short with errBodyTooLong.
type limitedWriter struct {
	w    io.Writer
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	long := int64(len(p)) > l.left
	if long {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err == nil && long {
		err = errBodyTooLong
	}
	return n, err
}

// sendDialer wraps dial's connections in sendConn.
func sendDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return sendConn{c}, nil
	}
}
