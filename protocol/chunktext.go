package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
)

// AppendTextChunk appends an upload.chunk text frame carrying data in
// base64 to dst: the shape ParseTextChunk reads without encoding/json.
// Building it by hand spares json.Marshal a scan of the base64 for
// characters to escape.
func AppendTextChunk(dst []byte, upload string, offset int64, data []byte) []byte {
	id, _ := json.Marshal(upload) // a string always encodes
	dst = append(dst, `{"t":"upload.chunk","upload":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, offset, 10)
	dst = append(dst, `,"data":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, data)
	return append(dst, `"}`...)
}

// ParseTextChunk recognises an upload.chunk text frame without running its
// payload through encoding/json, which would scan the base64 twice and copy
// it: data is a sub-slice of b. ok is false for anything but the plain shape
// (string and integer values of the fields t, id, upload, offset and data,
// no escapes); the caller then decodes the frame the general way, so the
// fast path changes nothing a client can see. data longer than 256 bytes is
// not checked for control characters or non-ASCII bytes: its base64
// decoding refuses them (with bad_chunk, where encoding/json would have
// answered bad_request).
func ParseTextChunk(b []byte) (id uint64, upload string, offset int64, data []byte, ok bool) {
	var haveT, haveUpload, haveData bool
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return
		}
		key, j, good := scanString(b, i)
		if !good {
			return
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return
		}
		if b[i] == '"' {
			val, j, good := scanString(b, i)
			if !good {
				return
			}
			i = j
			switch string(key) {
			case "t":
				if string(val) != TypeUploadChunk {
					return
				}
				haveT = true
			case "upload":
				upload, haveUpload = string(val), true
			case "data":
				data, haveData = val, true
			default:
				return
			}
		} else {
			j := i
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j == i || j-i > 18 || (b[i] == '0' && j-i > 1) {
				return // not a JSON number ferry would send
			}
			n, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil {
				return
			}
			i = j
			switch string(key) {
			case "id":
				id = uint64(n)
			case "offset":
				offset = n
			default:
				return
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != '}' || skipSpace(b, i+1) != len(b) {
			return
		}
		return id, upload, offset, data, haveT && haveUpload && haveData
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the contents of the string starting at b[i] (a quote)
// and the index after its closing quote; good is false when it has escapes
// or does not end. Strings up to shortString bytes are also refused for
// control characters or anything but ASCII (what JSON would refuse or
// rewrite); longer ones, which can only be chunk data, are not scanned byte
// by byte: their base64 decoding refuses such bytes anyway.
func scanString(b []byte, i int) (s []byte, next int, good bool) {
	end := bytes.IndexByte(b[i+1:], '"')
	if end < 0 {
		return nil, 0, false
	}
	s = b[i+1 : i+1+end]
	if len(s) > shortString {
		return s, i + 2 + end, bytes.IndexByte(s, '\\') < 0
	}
	for _, c := range s {
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return nil, 0, false
		}
	}
	return s, i + 2 + end, true
}

// shortString bounds the strings scanString checks byte by byte.
const shortString = 256
