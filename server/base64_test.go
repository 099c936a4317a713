package server

import (
	"bytes"
	"encoding/base64"
	"io"
	"testing"
	"testing/iotest"
)

func TestBase64Reader(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 5, 100, 4096, 100_003} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*31 + i>>8)
		}
		enc := []byte(base64.StdEncoding.EncodeToString(data))
		// Whole reads, one byte at a time, and odd sizes all decode the same.
		for name, r := range map[string]io.Reader{
			"whole":    &base64Reader{src: enc},
			"one byte": iotest.OneByteReader(&base64Reader{src: enc}),
			"half":     iotest.HalfReader(&base64Reader{src: enc}),
		} {
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes, %s: %d bytes back, %v", n, name, len(got), err)
			}
		}
		if err := iotest.TestReader(&base64Reader{src: enc}, data); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
	for _, bad := range []string{"!!!!", "AAA", "AAAAA", "A===", "AA=A"} {
		d := &base64Reader{src: []byte(bad)}
		if _, err := io.ReadAll(d); err == nil || d.err == nil {
			t.Fatalf("%q decoded without error", bad)
		}
	}
}
