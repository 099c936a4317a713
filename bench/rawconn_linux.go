package bench

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// The socket half of rawConn (see rawconn.go): a blocking connect and
// handshake, then reads and writes on the bare descriptor.

// rawDial connects to target (ws://host:port/path) and performs the
// WebSocket handshake. The socket is left in blocking mode
// with timeouts, for the joins that follow; see detach.
func rawDial(target, name string, timeout time.Duration) (*rawConn, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip4 := addr.IP.To4(); ip4 != nil {
		sa4 := &syscall.SockaddrInet4{Port: addr.Port}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		sa6 := &syscall.SockaddrInet6{Port: addr.Port}
		copy(sa6.Addr[:], addr.IP.To16())
		sa, family = sa6, syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	c := &rawConn{fd: fd, buf: make([]byte, rawBufSize)}
	if _, err := rand.Read(c.mask[:]); err != nil {
		c.close()
		return nil, err
	}
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := connect(fd, sa, timeout); err != nil {
		c.close()
		return nil, fmt.Errorf("connect %s: %w", u.Host, err)
	}
	if err := c.handshake(u, name); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// connect connects a blocking socket. A signal (the Go runtime's
// preemption, a profiler) can interrupt connect; the connection then
// completes in the background and connect is asked again until it says so.
func connect(fd int, sa syscall.Sockaddr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	err := syscall.Connect(fd, sa)
	for {
		switch {
		case err == nil, errors.Is(err, syscall.EISCONN):
			return nil
		case !errors.Is(err, syscall.EINTR) && !errors.Is(err, syscall.EALREADY):
			return err
		case time.Now().After(deadline):
			return syscall.ETIMEDOUT
		}
		time.Sleep(time.Millisecond)
		err = syscall.Connect(fd, sa)
	}
}

// read and write retry the calls a signal interrupts.
func read(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}

func write(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Write(fd, p)
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}

func (c *rawConn) handshake(u *url.URL, name string) error {
	var k [16]byte
	if _, err := rand.Read(k[:]); err != nil {
		return err
	}
	key := base64.StdEncoding.EncodeToString(k[:])
	path := u.EscapedPath() + "?name=" + url.QueryEscape(name)
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, u.Host, key)
	if err := c.writeAll([]byte(req)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	br := bufio.NewReaderSize(fdReader(c.fd), 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake: HTTP %s", resp.Status)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("handshake: bad Sec-WebSocket-Accept")
	}
	// Frames that came with the response are the start of the stream.
	rest, _ := br.Peek(br.Buffered())
	c.w = copy(c.buf, rest)
	return nil
}

// fdReader reads a blocking socket for http.ReadResponse.
type fdReader int

func (fd fdReader) Read(p []byte) (int, error) {
	n, err := read(int(fd), p)
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// detach puts the socket in non-blocking mode for the epoll loop and gives
// back the memory a large frame (a join ack listing every member) took.
func (c *rawConn) detach() error {
	if len(c.buf) > rawBufSize && c.w-c.r <= rawBufSize {
		b := make([]byte, rawBufSize)
		c.w = copy(b, c.buf[c.r:c.w])
		c.r, c.buf = 0, b
	}
	return syscall.SetNonblock(c.fd, true)
}

// fill reads once into the free end of the buffer, first moving unparsed
// bytes to the front. It returns syscall.EAGAIN when a non-blocking socket
// has nothing, and io.EOF when the peer closed.
func (c *rawConn) fill() error {
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.buf) {
		c.buf = append(c.buf, make([]byte, len(c.buf))...)
	}
	n, err := read(c.fd, c.buf[c.w:])
	if err != nil {
		return err
	}
	if n == 0 {
		return io.EOF
	}
	c.w += n
	return nil
}

func (c *rawConn) writeAll(b []byte) error {
	for len(b) > 0 {
		n, err := write(c.fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (c *rawConn) close() {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -1
	}
}
