package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ferryhq/ferry/protocol"
)

// toldError is a protocol error as the commands tell it to a person: the
// plain sentence protocol.Sentence has for its code (the one the web page
// shows), with the limit the server announced where the code is about one,
// then the code in brackets, to search for or quote in a bug report. The
// server's own message is written for developers and stays out. It
// unwraps to the *protocol.Error, so errors.As still finds the code.
type toldError struct {
	err    *protocol.Error
	limits protocol.Limits
}

func (e *toldError) Error() string {
	s := protocol.Sentence(e.err.Code)
	if l := limitOf(e.err.Code, e.limits); l != "" {
		s = strings.TrimSuffix(s, ".") + " (" + l + ")."
	}
	return s + " [" + e.err.Code + "]"
}

func (e *toldError) Unwrap() error { return e.err }

// told returns err told plainly when it holds a protocol error, and err
// as it is otherwise (nil, a lost connection, a refused handshake). limits
// are the welcome frame's, for the codes about one.
func told(err error, limits protocol.Limits) error {
	var perr *protocol.Error
	var done *toldError
	if !errors.As(err, &perr) || errors.As(err, &done) {
		return err
	}
	return &toldError{err: perr, limits: limits}
}

// limitOf says the limit code is about ("limit 2.0 GiB"), which Error
// adds at the end of the sentence as the page does (web/static/words.js),
// or "" when the code is about none or the server did not tell it.
func limitOf(code string, l protocol.Limits) string {
	switch {
	case code == protocol.CodeTooLarge && l.MaxFileSize > 0:
		return "limit " + sizeString(l.MaxFileSize)
	case code == protocol.CodeFrameTooLarge && l.MaxFrame > 0:
		return "limit " + sizeString(int64(l.MaxFrame))
	case code == protocol.CodeTooManyRooms && l.MaxRooms > 0:
		return fmt.Sprintf("at most %d", l.MaxRooms)
	case code == protocol.CodeTooManyUploads && l.MaxUploads > 0:
		return fmt.Sprintf("at most %d at once", l.MaxUploads)
	}
	return ""
}

// joinFailed is the error of a join of room that failed.
func joinFailed(room string, err error, limits protocol.Limits) error {
	return fmt.Errorf("cannot join room %q: %w", room, told(err, limits))
}
