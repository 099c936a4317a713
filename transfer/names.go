package transfer

import (
	"crypto/rand"
	"encoding/base32"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	uploadPrefix = "up_"
	filePrefix   = "f_"
	// idRandomBytes gives 128 bits of randomness: ids are unguessable, so
	// knowing an id is not enough to read a file (File checks nothing else).
	idRandomBytes = 16
	maxNameBytes  = 255
)

// idEncoding is lower-case so that ids stay distinct on case-insensitive file
// systems (the disk store) and URL-safe everywhere.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var idLen = idEncoding.EncodedLen(idRandomBytes)

func newID(prefix string) string {
	var b [idRandomBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + idEncoding.EncodeToString(b[:])
}

// validID reports whether id has the shape newID gives it. Ids are checked
// before they become part of a storage key.
func validID(id, prefix string) bool {
	if !strings.HasPrefix(id, prefix) || len(id) != len(prefix)+idLen {
		return false
	}
	for _, c := range id[len(prefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// checkName validates a file name as the user sees it.
func checkName(name string) error {
	switch {
	case name == "":
		return errorf(CodeBadName, "the file name is empty")
	case len(name) > maxNameBytes:
		return errorf(CodeBadName, "the file name is longer than %d bytes", maxNameBytes)
	case !utf8.ValidString(name):
		return errorf(CodeBadName, "the file name is not valid UTF-8")
	case name == "." || name == "..":
		return errorf(CodeBadName, "%q is not a file name", name)
	case strings.ContainsAny(name, `/\`):
		return errorf(CodeBadName, "the file name contains a path separator")
	}
	for _, r := range name {
		if unicode.IsControl(r) || isBidiControl(r) {
			return errorf(CodeBadName, "the file name contains control character %U", r)
		}
	}
	return nil
}

// maxRoomBytes is far above what the edge allows; it only keeps keys short.
const maxRoomBytes = 255

// checkRoom makes sure a room name can be part of a key; which rooms exist
// and who may send to them is the edge's business.
func checkRoom(room string) error {
	if room == "" || len(room) > maxRoomBytes || !utf8.ValidString(room) {
		return errorf(CodeBadRequest, "the room must be 1 to %d bytes of UTF-8", maxRoomBytes)
	}
	for _, r := range room {
		if unicode.IsControl(r) {
			return errorf(CodeBadRequest, "the room contains control character %U", r)
		}
	}
	return nil
}

// isBidiControl reports the characters that reorder text: they make
// "cat\u202Egpj.exe" look like "catexe.jpg".
func isBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F
}

// keySegment turns s into one readable storage key element: letters and
// digits of any script and a few punctuation marks stay, anything else
// becomes '_'. Keys never depend on this being reversible: the file id in
// the key keeps them unique, and the original name is in the metadata.
func keySegment(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), strings.ContainsRune("-_.()+=,@~ ", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := strings.Trim(b.String(), " ")
	// A leading dot would hide the file on disk and "." or ".." would be
	// refused as a key element.
	if out == "" || strings.HasPrefix(out, ".") {
		out = "_" + out
	}
	return out
}

// objectKey is where a file's bytes live:
// rooms/<room>/<yyyy>/<mm>/<dd>/<file id>/<name>.
func objectKey(room, fileID, name string, t time.Time) string {
	t = t.UTC()
	return path.Join("rooms", keySegment(room), t.Format("2006"), t.Format("01"), t.Format("02"), fileID, keySegment(name))
}

// strippedKey is where the copy of a file without its metadata is stored,
// next to the file: in the same folder (its file id's), under a longer name,
// so never the file's own.
func strippedKey(key string) string {
	dir, name := path.Split(key)
	return dir + "stripped-" + name
}

// thumbKey is where the thumbnail of the file at key is stored, next to it:
// "thumb-" and the file's name, with the thumbnail's extension, which is
// neither the file's name (longer) nor its stripped copy's.
func thumbKey(key, contentType string) string {
	ext := ".jpg"
	if contentType == "image/png" {
		ext = ".png"
	}
	dir, name := path.Split(key)
	return dir + "thumb-" + name + ext
}

const (
	uploadsPrefix = ".ferry/uploads/"
	filesPrefix   = ".ferry/files/"
)

func manifestKey(uploadID string) string { return uploadsPrefix + uploadID + ".json" }
func recordKey(fileID string) string     { return filesPrefix + fileID + ".json" }

// metaValue makes a user metadata value printable ASCII, as storage.Meta
// requires; readers undo it with url.PathUnescape.
func metaValue(s string) string { return url.PathEscape(s) }
