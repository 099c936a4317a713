package rooms

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhq/ferry/protocol"
)

// Prefixes of the built-in rooms every connection is in.
const (
	ConnPrefix = "conn:"
	UserPrefix = "user:"
)

// MaxNameLen bounds room and event names.
const MaxNameLen = 64

// ValidRoom reports whether name may be joined: 1 to 64 characters from
// A-Z a-z 0-9 - _ . : @, not a built-in room.
func ValidRoom(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return protocol.Errorf(protocol.CodeInvalidRoom, "room names have 1 to %d characters", MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '@':
		default:
			return protocol.Errorf(protocol.CodeInvalidRoom, "room name %q has a character outside A-Z a-z 0-9 - _ . : @", name)
		}
	}
	if builtIn(name) {
		return protocol.Errorf(protocol.CodeInvalidRoom, "%q is a built-in room: it cannot be joined or left", name)
	}
	return nil
}

func builtIn(name string) bool {
	return strings.HasPrefix(name, ConnPrefix) || strings.HasPrefix(name, UserPrefix)
}

// ValidEvent reports whether name may be used as an event name: 1 to 64
// characters of valid UTF-8 without control characters.
func ValidEvent(name string) error {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return protocol.Errorf(protocol.CodeInvalidEvent, "event names have 1 to %d bytes of UTF-8", MaxNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return protocol.Errorf(protocol.CodeInvalidEvent, "event name %q has a control character", name)
		}
	}
	return nil
}
