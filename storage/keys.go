package storage

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxKeyLen is S3's limit on object names; every store keeps to it so that a
// key that works in one works in all.
const MaxKeyLen = 1024

// CheckKey returns an error wrapping ErrInvalidKey for keys that could name
// something outside a store's root or that two stores would treat
// differently: empty, too long, absolute, "." or ".." elements, empty
// elements ("a//b", "a/"), backslashes (a separator on Windows), control
// characters and invalid UTF-8.
func CheckKey(key string) error {
	if reason := keyProblem(key); reason != "" {
		return fmt.Errorf("key %q: %s: %w", key, reason, ErrInvalidKey)
	}
	return nil
}

func keyProblem(key string) string {
	switch {
	case key == "":
		return "empty"
	case len(key) > MaxKeyLen:
		return "too long"
	case !utf8.ValidString(key):
		return "not UTF-8"
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x20 || c == 0x7f {
			return "control character"
		}
		if c == '\\' {
			return "backslash"
		}
	}
	for elem := range strings.SplitSeq(key, "/") {
		switch elem {
		case "":
			return "empty path element"
		case ".", "..":
			return "dot path element"
		}
	}
	return ""
}
