package server_test

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/server"
)

// TestRFC6455 walks the groups of the Autobahn testsuite against a real
// server through real sockets: each case opens a connection, joins a room
// (so that a text message comes back as an event), sends its frames byte
// for byte as written, and checks what the server answers: the close code
// it ends with, or, for a connection that must stay open, the frames it
// sends before the answer to a last JSON ping.
//
// The cases run on both of the server's socket paths (see socket.go): plain
// TCP, on Linux the epoll reader and sendmsg flushers, and TLS, the
// portable reader and writer goroutines every other platform uses.
func TestRFC6455(t *testing.T) {
	_, plain := startServer(t, server.Config{MaxFrame: rfcMaxFrame})
	_, overTLS := startTLSServer(t, server.Config{MaxFrame: rfcMaxFrame})
	for _, path := range []struct{ name, url string }{{"tcp", plain}, {"tls", overTLS}} {
		t.Run(path.name, func(t *testing.T) { testRFC6455(t, path.url) })
	}
}

func testRFC6455(t *testing.T, url string) {
	for _, tc := range rfcCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, url)
			var b []byte
			for _, f := range tc.send {
				b = append(b, f.wire()...)
			}
			if tc.close == 0 {
				b = append(b, wsText(rfcSentinel).wire()...)
			}
			// All in one write, as Autobahn's "one chop". A server that
			// fails fast may close before it is all written: the answer
			// tells.
			if _, err := c.nc.Write(b); err != nil && tc.close == 0 {
				t.Fatalf("write: %v", err)
			}
			code := 0
			got := c.answers(&code)
			if code != tc.close {
				t.Errorf("close %d, want %d (0: open)", code, tc.close)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("answers %q, want %q", got, want)
			}
			if code != 0 {
				// After its close frame the server closes the connection.
				if op, _, err := c.read(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("after the close frame: opcode %#x, %v; want the connection closed", op, err)
				}
			}
		})
	}
}

// A message cut off by the end of the connection is not handled: the end
// of the stream is not the end of the message. Handled, this one would be
// answered with an error frame, which the metrics count.
func TestCutMessageNotHandled(t *testing.T) {
	srv, url := startServer(t, server.Config{})
	c := dialRaw(t, url)
	f := wsText("not JSON")
	f.Claim = 100
	c.write(f)
	if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The server reads the message's end before it closes the socket.
	_ = c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		_, _, err := c.read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the server kept the connection open")
		}
		if err != nil {
			break
		}
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "ferry_error_frames_total 0\n") {
		t.Fatalf("the cut message was handled:\n%s", rec.Body.String())
	}
}

const (
	rfcMaxFrame = 100_000
	// rfcSentinel is the JSON ping whose pong ends the answers to a case
	// that keeps its connection open: the server handles frames in order.
	rfcSentinel = `{"t":"ping","ts":987654}`
)

type rfcCase struct {
	name string
	send []wsFrame
	// close is the close code the server must end with; 0 means the
	// connection stays open.
	close int
	// want is what the server sends before (see rawClient.answers), in
	// any order.
	want []string
}

// Answers as rawClient.answers writes them.
const (
	uploadsOff = "error:not_implemented" // a binary message, read whole
	badJSON    = "error:bad_frame"       // a text message, read whole
	tooLarge   = "error:frame_too_large" // a text message over MaxFrame, skipped
)

func rfcCases() []rfcCase {
	var cases []rfcCase
	add := func(name string, close int, want []string, send ...wsFrame) {
		cases = append(cases, rfcCase{name, send, close, want})
	}
	open := func(name string, want []string, send ...wsFrame) { add(name, 0, want, send...) }

	// 1: framing, and lengths in each of the three encodings.
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		open(fmt.Sprintf("1 framing/binary %d bytes", n), []string{uploadsOff}, wsBinary(strings.Repeat("\xfe", n)))
		if n > len(emit("")) {
			data := strings.Repeat("d", n-len(emit("")))
			open(fmt.Sprintf("1 framing/text %d bytes", n), []string{event(data)}, wsText(emit(data)))
		}
	}
	open("1 framing/empty text", []string{badJSON}, wsText(""))
	open("1 framing/two messages in one write", []string{event("a"), event("b")}, wsText(emit("a")), wsText(emit("b")))
	add("1 framing/16-bit length under 126", 1002, nil, wsText(emit("x")).encodeLength(2))
	add("1 framing/64-bit length under 65536", 1002, nil, wsText(emit("x")).encodeLength(8))
	add("1 framing/64-bit length, top bit set", 1002, nil, wsClaim(1, 1<<63).encodeLength(8))
	add("1 framing/unmasked text", 1002, nil, wsText(emit("x")).unmask())
	add("1 framing/unmasked binary", 1002, nil, wsBinary("x").unmask())
	add("1 framing/unmasked ping", 1002, nil, wsPing("x").unmask())
	add("1 framing/unmasked close", 1002, nil, wsClose(1000, "").unmask())

	// 2: pings and pongs.
	for _, p := range []string{"", "Hello, world!", strings.Repeat("*", 125), "\x00\xff\xfe\x01binary"} {
		open(fmt.Sprintf("2 ping/payload %d bytes", len(p)), []string{"pong:" + p}, wsPing(p))
	}
	add("2 ping/payload 126 bytes", 1002, nil, wsPing(strings.Repeat("*", 126)))
	add("2 ping/64-bit length", 1002, nil, wsClaim(9, 200).encodeLength(8))
	open("2 ping/unsolicited pong", nil, wsPong("x"))
	open("2 ping/unsolicited empty pong", nil, wsPong(""))
	open("2 ping/pong then ping", []string{"pong:b"}, wsPong("a"), wsPing("b"))
	tenPings := make([]wsFrame, 10)
	tenPongs := make([]string, 10)
	for i := range tenPings {
		tenPings[i], tenPongs[i] = wsPing(fmt.Sprint(i)), "pong:"+fmt.Sprint(i)
	}
	open("2 ping/ten in a row", tenPongs, tenPings...)

	// 3: reserved bits, with no extension negotiated.
	for rsv := byte(1); rsv <= 7; rsv++ {
		add(fmt.Sprintf("3 reserved bits/%03b on text", rsv), 1002, nil, wsText(emit("x")).reserved(rsv))
	}
	add("3 reserved bits/on binary", 1002, nil, wsBinary("x").reserved(4))
	add("3 reserved bits/on ping", 1002, nil, wsPing("x").reserved(2))
	add("3 reserved bits/on close", 1002, nil, wsClose(1000, "").reserved(1))
	add("3 reserved bits/after a good message", 1002, []string{event("ok")}, wsText(emit("ok")), wsText(emit("x")).reserved(1), wsPing("late"))

	// 4: reserved opcodes.
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		add(fmt.Sprintf("4 opcodes/%#x empty", op), 1002, nil, wsOp(op, ""))
		add(fmt.Sprintf("4 opcodes/%#x with payload", op), 1002, nil, wsOp(op, "reserved"))
	}
	add("4 opcodes/after a ping", 1002, []string{"pong:p"}, wsPing("p"), wsOp(5, ""))

	// 5: fragmentation.
	msg := emit("fragmented")
	open("5 fragmentation/text in two", []string{event("fragmented")}, split(msg, 10)...)
	open("5 fragmentation/text in one-byte frames", []string{event("fragmented")}, split(msg, everyByte(msg)...)...)
	open("5 fragmentation/empty fragments", []string{event("fragmented")},
		wsText("").more(), wsCont(msg[:5]).more(), wsCont("").more(), wsCont(msg[5:]).more(), wsCont(""))
	open("5 fragmentation/binary in three", []string{uploadsOff}, wsBinary("ab").more(), wsCont("cd").more(), wsCont("ef"))
	open("5 fragmentation/pings between fragments", []string{"pong:1", "pong:2", event("fragmented")},
		wsText(msg[:4]).more(), wsPing("1"), wsCont(msg[4:9]).more(), wsPing("2"), wsPong("u"), wsCont(msg[9:]))
	add("5 fragmentation/fragmented ping", 1002, nil, wsPing("a").more(), wsCont("b"))
	add("5 fragmentation/fragmented pong", 1002, nil, wsPong("a").more(), wsCont("b"))
	add("5 fragmentation/fragmented close", 1002, nil, wsClose(1000, "").more(), wsCont(""))
	add("5 fragmentation/fragmented ping inside a message", 1002, nil, wsText(msg[:4]).more(), wsPing("a").more())
	add("5 fragmentation/continuation without a message", 1002, nil, wsCont(msg))
	add("5 fragmentation/unfinished continuation without a message", 1002, nil, wsCont(msg).more())
	add("5 fragmentation/continuation after a whole message", 1002, []string{event("fragmented")},
		append(split(msg, 10), wsCont("x").more(), wsText(emit("never")))...)
	add("5 fragmentation/text inside a text message", 1002, nil, wsText(msg[:4]).more(), wsText(msg))
	add("5 fragmentation/binary inside a text message", 1002, nil, wsText(msg[:4]).more(), wsBinary("x"))
	add("5 fragmentation/close inside a message", 1000, nil, wsText(msg[:4]).more(), wsClose(1000, ""), wsCont(msg[4:]))

	// 6: UTF-8 in text messages (RFC 3629), each sent whole, cut at every
	// byte (a code point split between frames is valid), and one byte per
	// frame.
	valid := []string{
		"Hello-µ@ßöäüàá-UTF-8!!",
		"κόσμε",
		"\u0080\u07ff\u0800\uffff\U00010000\U0010ffff",
		"\ufffd", // the replacement character itself, encoded
		"\xef\xbb\xbf with a byte-order mark",
	}
	for i, s := range valid {
		m := emit(s)
		open(fmt.Sprintf("6 utf8/valid %d whole", i), []string{event(s)}, wsText(m))
		open(fmt.Sprintf("6 utf8/valid %d one byte a frame", i), []string{event(s)}, split(m, everyByte(m)...)...)
		start := len(emit("")) - 2 // where s starts in m
		for cut := start + 1; cut < start+len(s); cut++ {
			open(fmt.Sprintf("6 utf8/valid %d cut at %d", i, cut-start), []string{event(s)}, split(m, cut)...)
		}
	}
	for _, bad := range []struct{ name, s string }{
		{"byte 0xff", "ab\xffcd"},
		{"byte 0xfe", "\xfe"},
		{"lone continuation", "a\x80b"},
		{"overlong slash", "\xc0\xaf"},
		{"overlong nul", "\xe0\x80\x80"},
		{"surrogate", "κόσμε\xed\xa0\x80edited"},
		{"over U+10FFFF", "\xf4\x90\x80\x80"},
		{"five bytes", "\xf8\x88\x80\x80\x80"},
		{"cut code point at the end", "κόσμ\xce"},
		{"cut 4-byte code point", "\xf0\x9f\x98"},
	} {
		m := emitRaw(bad.s)
		add("6 utf8/invalid whole: "+bad.name, 1007, nil, wsText(m))
		add("6 utf8/invalid one byte a frame: "+bad.name, 1007, nil, split(m, everyByte(m)...)...)
	}
	add("6 utf8/invalid across frames: 0xf4 | 0x90", 1007, nil, wsText("\xf4").more(), wsCont("\x90\x80\x80"))
	add("6 utf8/invalid across frames: surrogate", 1007, nil, wsText("κόσμε\xed").more(), wsCont("\xa0\x80"))
	add("6 utf8/invalid across frames: bad continuation", 1007, nil, wsText("\xe2\x82").more(), wsCont("A"))
	add("6 utf8/invalid in a later fragment", 1007, nil, wsText(`{"t":"emit"`).more(), wsCont(",\xff").more(), wsCont("}"))
	// Failing fast (RFC 6455, 8.1): the server must not wait for the rest
	// of a message that cannot become valid.
	add("6 utf8/fail fast: bad byte, message unfinished", 1007, nil, wsText("κόσμε\xffmore").more())
	add("6 utf8/fail fast: impossible prefix at the end of a fragment", 1007, nil, wsText("κόσμε\xed\xa0").more())
	add("6 utf8/fail fast: bad byte, frame unfinished", 1007, nil, func() wsFrame { f := wsText("ab\xff"); f.Claim = 100; return f }())
	add("6 utf8/binary is not UTF-8 checked", 0, []string{uploadsOff}, wsBinary("\xff\xfe\xc0\xaf"))

	// 7: close frames. The server answers a valid one with its code and a
	// payload-less one with 1000.
	add("7 close/no payload", 1000, nil, wsOp(8, ""))
	add("7 close/one-byte payload", 1002, nil, wsOp(8, "\x03"))
	add("7 close/code only", 1000, nil, wsClose(1000, ""))
	add("7 close/with reason", 1000, nil, wsClose(1000, "bye"))
	add("7 close/123-byte reason", 1000, nil, wsClose(1000, strings.Repeat("r", 123)))
	add("7 close/124-byte reason", 1002, nil, wsClose(1000, strings.Repeat("r", 124)))
	add("7 close/reason not UTF-8", 1007, nil, wsClose(1000, "κόσμε\xed\xa0\x80edited"))
	add("7 close/bad code and bad reason", 1002, nil, wsClose(1005, "\xff"))
	add("7 close/frames after it are ignored", 1000, nil, wsClose(1000, ""), wsText(emit("late")), wsPing("late"))
	add("7 close/after a ping", 1000, []string{"pong:p"}, wsPing("p"), wsClose(1000, ""))
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		add(fmt.Sprintf("7 close/valid code %d", code), code, nil, wsClose(code, ""))
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		add(fmt.Sprintf("7 close/invalid code %d", code), 1002, nil, wsClose(code, ""))
	}

	// 9: limits. Past MaxFrame a text message is refused with an error
	// frame; past the read limit (16 × the largest frame) the connection
	// ends with 1009, as docs/protocol.md says, as soon as a header says so.
	big := strings.Repeat("d", rfcMaxFrame)
	open("9 limits/text over MaxFrame", []string{tooLarge}, wsText(emit(big)))
	open("9 limits/fragmented text over MaxFrame", []string{tooLarge}, split(emit(big), 1000, 70000)...)
	add("9 limits/frame past the read limit", 1009, nil, wsClaim(1, 1<<40))
	add("9 limits/64-bit length past any limit", 1009, nil, wsClaim(1, 1<<63-1))
	add("9 limits/message past the read limit", 1009, nil, wsText("{").more(), wsClaim(0, 1<<40))
	return cases
}

// emit is a text message the server sends back as an event with data.
func emit(data string) string {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return emitRaw(string(b[1 : len(b)-1]))
}

// emitRaw is emit with data put between the quotes as it is.
func emitRaw(data string) string {
	return `{"t":"emit","room":"rfc","event":"e","data":"` + data + `"}`
}

// event is the answer to emit(data).
func event(data string) string {
	if len(data) > 40 {
		return fmt.Sprintf("event:%.20s…(%d bytes)", data, len(data))
	}
	return "event:" + data
}

// split cuts a text message into fragments at the given offsets.
func split(msg string, cuts ...int) []wsFrame {
	var frames []wsFrame
	op, from := byte(1), 0
	for _, cut := range append(cuts, len(msg)) {
		f := wsOp(op, msg[from:cut])
		f.More = cut < len(msg)
		frames = append(frames, f)
		op, from = 0, cut
	}
	return frames
}

func everyByte(s string) []int {
	cuts := make([]int, 0, len(s))
	for i := 1; i < len(s); i++ {
		cuts = append(cuts, i)
	}
	return cuts
}

// wsFrame is a client frame as a case writes it (see server.WireFrame).
type wsFrame struct{ server.WireFrame }

// wsMask is the masking key of every frame: not zero, so that a server
// that forgot to unmask would see garbage.
var wsMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

func wsOp(op byte, payload string) wsFrame {
	return wsFrame{server.WireFrame{Op: op, Payload: []byte(payload), Key: wsMask}}
}

func wsText(s string) wsFrame   { return wsOp(1, s) }
func wsBinary(s string) wsFrame { return wsOp(2, s) }
func wsCont(s string) wsFrame   { return wsOp(0, s) }
func wsPing(s string) wsFrame   { return wsOp(9, s) }
func wsPong(s string) wsFrame   { return wsOp(10, s) }

func wsClose(code int, reason string) wsFrame {
	return wsOp(8, string(binary.BigEndian.AppendUint16(nil, uint16(code)))+reason)
}

// wsClaim is a frame whose header gives length, followed by no payload.
func wsClaim(op byte, length uint64) wsFrame {
	f := wsOp(op, "")
	f.Claim = length
	return f
}

func (f wsFrame) more() wsFrame              { f.More = true; return f }
func (f wsFrame) reserved(rsv byte) wsFrame  { f.RSV = rsv; return f }
func (f wsFrame) unmask() wsFrame            { f.Unmasked = true; return f }
func (f wsFrame) encodeLength(n int) wsFrame { f.LenBytes = n; return f }
func (f wsFrame) wire() []byte               { return f.Append(nil) }

// rawClient is a client on a bare socket, so that frames go out exactly as
// a case writes them and come back exactly as the server sent them.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialRaw connects, reads the welcome and joins the room "rfc".
func dialRaw(t *testing.T, url string) *rawClient {
	t.Helper()
	_, hostPath, _ := strings.Cut(url, "://")
	slash := strings.IndexByte(hostPath, '/')
	host, path := hostPath[:slash], hostPath[slash:]
	var nc net.Conn
	var err error
	if c := tlsConfigFor(url); c != nil {
		nc, err = tls.Dial("tcp", host, c)
	} else {
		nc, err = net.Dial("tcp", host)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host)
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	if op, p, err := c.read(); err != nil || op != 1 || !strings.Contains(string(p), `"welcome"`) {
		t.Fatalf("first frame %#x %q %v, want the welcome", op, p, err)
	}
	c.write(wsText(`{"t":"join","room":"rfc","id":1}`))
	for {
		op, p, err := c.read()
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		if op == 1 && strings.Contains(string(p), `"ack"`) {
			return c
		}
	}
}

func (c *rawClient) write(f wsFrame) {
	c.t.Helper()
	if _, err := c.nc.Write(f.wire()); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one server frame.
func (c *rawClient) read() (op byte, payload []byte, err error) { return server.ReadServerFrame(c.br) }

// answers reads what the server sends until its close frame, whose code
// goes into *code, or until the answer to rfcSentinel. Pongs read as
// "pong:<payload>", text frames as "<type>:<detail>"; heartbeat pings and
// presence frames are left out.
func (c *rawClient) answers(code *int) []string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got []string
	for {
		op, p, err := c.read()
		if err != nil {
			c.t.Fatalf("after %q: %v (no close frame, no answer to the last ping)", got, err)
		}
		switch op {
		case 8:
			*code = 1005
			if len(p) >= 2 {
				*code = int(binary.BigEndian.Uint16(p))
			}
			return got
		case 10:
			got = append(got, "pong:"+string(p))
		case 1:
			var f struct {
				T, Code string
				TS      int64
				Data    json.RawMessage
			}
			if err := json.Unmarshal(p, &f); err != nil {
				c.t.Fatalf("server text frame %q: %v", p, err)
			}
			switch f.T {
			case "pong":
				if f.TS == 987654 {
					return got
				}
				got = append(got, "pong-json")
			case "error":
				got = append(got, "error:"+f.Code)
			case "event":
				var s string
				_ = json.Unmarshal(f.Data, &s)
				got = append(got, event(s))
			case "presence":
			default:
				got = append(got, f.T)
			}
		case 9:
		default:
			got = append(got, fmt.Sprintf("opcode %#x", op))
		}
	}
}
