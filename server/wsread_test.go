package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/server"
)

// Messages split into many frames, with pings in between, arrive whole.
func TestFragmentedMessages(t *testing.T) {
	_, url := startServer(t, server.Config{})
	d := websocket.Dialer{WriteBufferSize: 256}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, ws: ws}
	t.Cleanup(func() { ws.Close() })
	p.readWire() // welcome
	p.mustAck(frame{"t": "join", "room": "frag"})

	text := strings.Repeat("0123456789", 1000)
	w, err := ws.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	msg := `{"t":"emit","id":99,"room":"frag","event":"long","data":"` + text + `"}`
	for i := 0; i < len(msg); i += 300 {
		end := min(i+300, len(msg))
		if _, err := w.Write([]byte(msg[i:end])); err != nil {
			t.Fatal(err)
		}
		// A control frame in the middle of the message is allowed.
		if err := ws.WriteControl(websocket.PingMessage, []byte("mid"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ev := p.readType("event")
	if ev["data"] != text {
		t.Fatalf("data has %d bytes, want %d", len(ev["data"].(string)), len(text))
	}
	if ack := p.readType("ack"); ack["id"] != float64(99) {
		t.Fatalf("ack %v", ack)
	}
}

// Violations of RFC 6455 end the connection with the matching close code.
func TestFrameViolations(t *testing.T) {
	_, url := startServer(t, server.Config{})
	for _, tc := range []struct {
		name string
		raw  []byte
		code int
	}{
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, 1002},
		{"reserved bits", []byte{0xC1, 0x80, 0, 0, 0, 0}, 1002},
		{"unknown opcode", []byte{0x83, 0x80, 0, 0, 0, 0}, 1002},
		{"lone continuation", []byte{0x80, 0x80, 0, 0, 0, 0}, 1002},
		{"fragmented ping", []byte{0x09, 0x80, 0, 0, 0, 0}, 1002},
		{"giant length", []byte{0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0}, 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dial(t, url)
			if _, err := p.ws.NetConn().Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			if code := readUntilClose(t, p); code != tc.code {
				t.Fatalf("close %d, want %d", code, tc.code)
			}
		})
	}
}
