//go:build !linux

package bench

import "errors"

// Outside Linux the fan-out has no members to read (see members_other.go),
// so a rawConn never gets a socket: the frame code in rawconn.go builds, and
// its socket calls fail.

var errRawSockets = errors.New("raw member sockets are read with epoll: Linux only")

func (c *rawConn) fill() error           { return errRawSockets }
func (c *rawConn) writeAll([]byte) error { return errRawSockets }
