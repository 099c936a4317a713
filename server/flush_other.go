//go:build !linux

package server

// iovecs, outside Linux, writes nothing: every write goes to a writer
// goroutine that may wait for the socket.
type iovecs struct{}

func (*iovecs) write(*transport, [][]byte) (int, error) { return 0, errWouldBlock }
