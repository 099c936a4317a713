package protocol

import (
	"errors"
	"fmt"
)

// Error codes sent in error frames.
const (
	CodeBadFrame      = "bad_frame"
	CodeUnknownType   = "unknown_type"
	CodeFrameTooLarge = "frame_too_large"
	CodeInvalidRoom   = "invalid_room"
	CodeInvalidEvent  = "invalid_event"
	CodeInvalidTarget = "invalid_target"
	CodeNotMember     = "not_member"
	// CodeUnknownRoom is no longer sent: a room one is not in answers
	// CodeNotMember whether or not it exists.
	CodeUnknownRoom   = "unknown_room"
	CodeUnknownTarget = "unknown_target"
	CodeTooManyRooms  = "too_many_rooms"
	CodeRateLimited   = "rate_limited"
	// CodeOverQuota refuses what would take more than the sender's share
	// of a server-wide resource (rooms' history).
	CodeOverQuota      = "over_quota"
	CodeInternal       = "internal"
	CodeNotImplemented = "not_implemented"
	CodeBadChunk       = "bad_chunk"
)

// Upload error codes.
const (
	CodeBadOffset          = "bad_offset"
	CodeTooLarge           = "too_large"
	CodeBeyondSize         = "beyond_size"
	CodeUnknownUpload      = "unknown_upload"
	CodeForbidden          = "forbidden"
	CodeBadName            = "bad_name"
	CodeBadRequest         = "bad_request"
	CodeTypeRefused        = "type_refused"
	CodeTypeMismatch       = "type_mismatch"
	CodeChecksumMismatch   = "checksum_mismatch"
	CodeTooManyUploads     = "too_many_uploads"
	CodeWindowExceeded     = "window_exceeded"
	CodeStorageUnavailable = "storage_unavailable"
	CodeCanceled           = "canceled"
	CodeNotFound           = "not_found"
	// CodeExpired: the upload was abandoned for longer than the upload
	// TTL, or its stored parts were discarded; it cannot be resumed.
	CodeExpired = "expired"
	// CodeStorageFull: the storage has no room for the file (a full disk,
	// an exhausted quota). The upload is over; nothing of it is kept.
	CodeStorageFull = "storage_full"
	// CodeBusy: the server has no part memory free for the upload right
	// now; try again after RetryAfter milliseconds. Nothing changed.
	CodeBusy = "busy"
)

// Close codes. Codes from 4500 to 4999 tell a client not to reconnect.
const (
	CloseNormal            = 1000
	CloseGoingAway         = 1001
	CloseProtocolError     = 1002
	CloseInvalidPayload    = 1007
	CloseMessageTooBig     = 1009
	CloseSlow              = 4000
	CloseHeartbeatTimeout  = 4001
	CloseUnauthorized      = 4500
	CloseFlood             = 4502
	CloseProtocolViolation = 4503
)

// Reconnectable reports whether a client should reconnect after the server
// closed with code.
func Reconnectable(code int) bool { return code < 4500 || code > 4999 }

// Error is an error with a protocol code: what the server sends in an error
// frame and what the Go client returns for one.
type Error struct {
	Code    string
	Message string
	// Upload and Offset are set for upload errors.
	Upload string
	Offset *int64
	// RetryAfter, in milliseconds, is set with CodeBusy: when to try again.
	RetryAfter int64
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is matches errors with the same code, so errors.Is(err, &Error{Code: c}) works.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
