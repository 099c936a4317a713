package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ferryhq/ferry/protocol"
)

// Errors a Client returns besides *protocol.Error (the server's answer to a
// request) and context errors.
var (
	// ErrClosed: Close was called.
	ErrClosed = errors.New("client: closed")
	// ErrConnectionLost: the connection dropped before the server answered.
	// The request may or may not have been carried out; the caller may retry
	// (the client reconnects unless told not to). The error also wraps the
	// reason the connection ended.
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrPingTimeout: the server went silent for longer than its ping
	// interval plus its ping timeout, so the link was taken for dead.
	ErrPingTimeout = errors.New("client: ping timeout")
	// ErrSlowHandlers: events of a joined room came faster than the
	// handlers took them, beyond Config.QueueSize. Rather than drop any, the
	// client closes the connection (once no request of a handler waits for
	// an answer on it) and, once the handlers have worked through half
	// their queue (or one waits for the connection), reconnects and catches
	// up.
	ErrSlowHandlers = errors.New("client: handlers too slow; reconnecting to catch up")
	// ErrReconnectFailed: every reconnection attempt allowed by
	// Backoff.Attempts failed. It wraps the last attempt's error.
	ErrReconnectFailed = errors.New("client: reconnection failed")
)

// CloseError reports that the server closed the connection with a close
// frame. Codes are listed in package protocol; 4500-4999 mean the client
// must not reconnect by itself.
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("client: server closed the connection (%d)", e.Code)
	}
	return fmt.Sprintf("client: server closed the connection (%d): %s", e.Code, e.Text)
}

// HandshakeError reports that the server refused the WebSocket upgrade with
// an HTTP status: 401 for a missing or bad token, 403 for a refused origin,
// 503 while it shuts down.
type HandshakeError struct {
	StatusCode int
	// Message is the start of the response body.
	Message string
}

func (e *HandshakeError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("client: handshake refused: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("client: handshake refused: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// errVersion reports a server speaking another protocol version.
type errVersion int

func (v errVersion) Error() string {
	return fmt.Sprintf("client: server speaks protocol version %d, this client %d", int(v), protocol.Version)
}

// permanent reports whether err rules out an automatic reconnection: the
// server said so with a 4500-4999 close code, refused our credentials or
// origin, or speaks another protocol.
func permanent(err error) bool {
	var ce *CloseError
	if errors.As(err, &ce) {
		return !protocol.Reconnectable(ce.Code)
	}
	var he *HandshakeError
	if errors.As(err, &he) {
		return he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden
	}
	var ve errVersion
	return errors.As(err, &ve)
}

// lost wraps the reason a connection ended for a request that was waiting on it.
func lost(reason error) error {
	if reason == nil {
		return ErrConnectionLost
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, reason)
}

// errDecode reports an answer of the server that does not decode.
func errDecode(what string, err error) error {
	return fmt.Errorf("client: decoding the %s answer: %w", what, err)
}

// errorOf is the error a caller gets for an error frame.
func errorOf(ef protocol.ErrorFrame) *protocol.Error {
	return &protocol.Error{Code: ef.Code, Message: ef.Message, Upload: ef.Upload, Offset: ef.Offset, RetryAfter: ef.RetryAfterMS}
}
