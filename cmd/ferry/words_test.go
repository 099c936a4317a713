package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
)

// A protocol error is told in its sentence, with the limit at the end of
// it as the page words it (web/static/words.js), then its code; other
// errors pass as they are.
func TestTold(t *testing.T) {
	limits := protocol.Limits{MaxFileSize: 2 << 30, MaxFrame: 64 << 10, MaxRooms: 50, MaxUploads: 4}
	perr := func(code string) error { return &protocol.Error{Code: code, Message: "for developers"} }
	tests := []struct {
		err  error
		want string
	}{
		{perr(protocol.CodeRateLimited), "You are sending too fast. Wait a moment and try again. [rate_limited]"},
		{perr(protocol.CodeTooLarge), "This file is larger than the server accepts (limit 2.0 GiB). [too_large]"},
		{perr(protocol.CodeFrameTooLarge), "This message is too long for the server. Send it in shorter parts (limit 64.0 KiB). [frame_too_large]"},
		{perr(protocol.CodeTooManyUploads), "Too many uploads are running at once. Wait for some to finish and try again (at most 4 at once). [too_many_uploads]"},
		{perr("from_a_newer_server"), "Something went wrong. Try again. [from_a_newer_server]"},
		{fmt.Errorf("wrapped: %w", perr(protocol.CodeNotFound)), "This file is no longer available. [not_found]"},
		{told(perr(protocol.CodeForbidden), limits), "You are not allowed to do that here. [forbidden]"},
		{client.ErrConnectionLost, client.ErrConnectionLost.Error()},
	}
	for _, tt := range tests {
		got := told(tt.err, limits)
		if got.Error() != tt.want {
			t.Errorf("told(%v)\n %q\nwant\n %q", tt.err, got, tt.want)
		}
		if !errors.Is(got, tt.err) {
			t.Errorf("told(%v) does not wrap it", tt.err)
		}
	}
	if told(nil, limits) != nil {
		t.Error("told(nil) is not nil")
	}
}
