package transfer

import (
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/storage"
)

// Error codes: the wire protocol's upload codes (docs/protocol.md).
const (
	CodeBadOffset          = protocol.CodeBadOffset
	CodeTooLarge           = protocol.CodeTooLarge
	CodeBeyondSize         = protocol.CodeBeyondSize
	CodeUnknownUpload      = protocol.CodeUnknownUpload
	CodeForbidden          = protocol.CodeForbidden
	CodeBadName            = protocol.CodeBadName
	CodeBadRequest         = protocol.CodeBadRequest
	CodeTypeRefused        = protocol.CodeTypeRefused
	CodeTypeMismatch       = protocol.CodeTypeMismatch
	CodeChecksumMismatch   = protocol.CodeChecksumMismatch
	CodeTooManyUploads     = protocol.CodeTooManyUploads
	CodeWindowExceeded     = protocol.CodeWindowExceeded
	CodeStorageUnavailable = protocol.CodeStorageUnavailable
	CodeCanceled           = protocol.CodeCanceled
	CodeNotFound           = protocol.CodeNotFound
	CodeExpired            = protocol.CodeExpired
	CodeStorageFull        = protocol.CodeStorageFull
	CodeBusy               = protocol.CodeBusy
	CodeOverQuota          = protocol.CodeOverQuota
)

// Error is the one error type of the transfer package: a stable code a client
// can branch on, a message a person can read, and for offset problems the
// offset the server expects.
type Error struct {
	Code    string
	Message string
	// Offset is meaningful for CodeBadOffset, CodeBeyondSize and
	// CodeWindowExceeded: where the client must continue from.
	Offset int64
	// RetryAfter is set with CodeBusy: when the client may try again.
	RetryAfter time.Duration
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is match on the code, so that callers can compare against
// the sentinels below.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code && t.Message == ""
}

// Sentinels for errors.Is.
var (
	ErrBadOffset          = &Error{Code: CodeBadOffset}
	ErrUnknownUpload      = &Error{Code: CodeUnknownUpload}
	ErrStorageUnavailable = &Error{Code: CodeStorageUnavailable}
	ErrTypeRefused        = &Error{Code: CodeTypeRefused}
	ErrTypeMismatch       = &Error{Code: CodeTypeMismatch}
	ErrChecksumMismatch   = &Error{Code: CodeChecksumMismatch}
	ErrWindowExceeded     = &Error{Code: CodeWindowExceeded}
	ErrForbidden          = &Error{Code: CodeForbidden}
	ErrNotFound           = &Error{Code: CodeNotFound}
	ErrCanceled           = &Error{Code: CodeCanceled}
	ErrExpired            = &Error{Code: CodeExpired}
	ErrBeyondSize         = &Error{Code: CodeBeyondSize}
	ErrTooLarge           = &Error{Code: CodeTooLarge}
	ErrBadName            = &Error{Code: CodeBadName}
	ErrBadRequest         = &Error{Code: CodeBadRequest}
	ErrTooManyUploads     = &Error{Code: CodeTooManyUploads}
	ErrStorageFull        = &Error{Code: CodeStorageFull}
	ErrBusy               = &Error{Code: CodeBusy}
)

// ErrorCode returns err's transfer code, or "internal".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "internal"
}

// Terminal reports whether err ends its upload for good: the client must not
// resume it and may only start a new one. Errors about a single chunk or
// request (bad offset, beyond size, window exceeded, too large) and
// CodeStorageUnavailable leave the upload as it was.
func Terminal(err error) bool {
	switch ErrorCode(err) {
	case CodeTypeRefused, CodeTypeMismatch, CodeChecksumMismatch, CodeCanceled, CodeExpired, CodeStorageFull:
		return true
	}
	return false
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// wrapf is errorf with a cause, kept for errors.Is and errors.As.
func wrapf(err error, code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

func offsetError(code string, offset int64, format string, args ...any) *Error {
	e := errorf(code, format, args...)
	e.Offset = offset
	return e
}

// storageError is a failed storage call as the client hears of it: final
// when the store is full, something that passes otherwise.
func storageError(err error, format string, args ...any) *Error {
	if errors.Is(err, storage.ErrFull) {
		return wrapf(err, CodeStorageFull, "the storage is full: "+format, args...)
	}
	return wrapf(err, CodeStorageUnavailable, format, args...)
}
