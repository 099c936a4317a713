package protocol

import (
	"encoding/json"
	"fmt"
)

// DecodeRequest parses one client text frame. Every failure is an *Error with
// code bad_frame or unknown_type and a message that says what is wrong.
func DecodeRequest(b []byte) (*Request, error) {
	var req Request
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, &Error{Code: CodeBadFrame, Message: fmt.Sprintf("not a JSON object of the protocol: %v", err)}
	}
	if req.T == "" {
		return &req, &Error{Code: CodeUnknownType, Message: `frame has no type (field "t")`}
	}
	// Unmarshal has checked the whole frame, data included: it passes
	// through as it is.
	return &req, nil
}
