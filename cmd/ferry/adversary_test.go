package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/protocol"
)

// rssBound is what the server may hold while under attack with the flags
// TestAdversaries gives it: part memory 64 MiB and history 64 MiB, with
// room for send queues of 1 MiB and the runtime's own overhead.
const rssBound = 192 << 20

// The attacks of docs/security.md against a real "ferry serve", one after
// the other, by clients that speak the protocol directly from other
// loopback addresses, while a normal user on 127.0.0.1 keeps chatting and
// uploads a file. Each attack is refused or cut off with its documented
// code; the server's memory stays under rssBound; the normal user's
// requests are answered with p99 under 100 ms and its upload completes.
func TestAdversaries(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server under attack for about half a minute")
	}
	srv := startServedFerry(t, testenv.Ferry(t),
		"--max-queue", "1048576", "--part-memory", "67108864", "--history-memory", "67108864",
		"--history-per-user", "8388608", "--max-conns-per-ip", "200", "--max-conns", "2000")

	// The server's peak memory, sampled all along.
	var peakRSS atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if m, err := bench.ReadMemory(srv.cmd.Process.Pid); err == nil && m.RSS > peakRSS.Load() {
				peakRSS.Store(m.RSS)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	user := newChatter(t, srv.addr)
	defer user.stop()

	for _, a := range []struct {
		name   string
		attack func(t *testing.T, addr string) string
	}{
		{"pings without reading", attackPings},
		{"history in fresh rooms", attackHistory},
		{"WebSocket connections from one address", attackConnections},
		{"sockets opened and never used", attackSockets},
		{"direct messages to made-up users", attackMailboxes},
		{"refused chunks and received frames", attackUnpaced},
		{"message ids and receipts", attackTables},
	} {
		t.Run(a.name, func(t *testing.T) {
			start := time.Now()
			outcome := a.attack(t, srv.addr)
			t.Logf("%s in %v; server RSS peak so far %d MiB", outcome, time.Since(start).Round(time.Millisecond), peakRSS.Load()>>20)
		})
	}
	// The normal user uploads while the last attacks' effects drain.
	user.upload(t, 4<<20)
	close(stopSampling)
	<-sampled

	peak := peakRSS.Load()
	if peak == 0 {
		t.Fatal("the server's memory was never read")
	}
	lat := user.latencies()
	if len(lat) < 100 {
		t.Fatalf("the normal user got %d answers", len(lat))
	}
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("normal user: %d requests answered, p50 %v, p99 %v; server RSS peak %d MiB (bound %d MiB)", len(lat), p50, p99, peak>>20, rssBound>>20)
	if p99 > 100*time.Millisecond {
		t.Errorf("normal user's p99 %v under attack, want < 100 ms", p99)
	}
	if peak > rssBound {
		t.Errorf("server RSS peaked at %d MiB, over the %d MiB bound", peak>>20, rssBound>>20)
	}
}

// chatter is the normal user: it emits to a room every 20 ms and times the
// acks.
type chatter struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	sent map[uint64]time.Time
	lat  []time.Duration
	next uint64
	// frames other than acks go here (upload traffic).
	frames chan map[string]any
	done   chan struct{}
	ended  chan struct{}
}

func newChatter(t *testing.T, addr string) *chatter {
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?name=alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &chatter{ws: ws, sent: make(map[uint64]time.Time), frames: make(chan map[string]any, 1024),
		done: make(chan struct{}), ended: make(chan struct{})}
	go c.read()
	c.write(map[string]any{"t": "join", "room": "lobby", "id": 1})
	go func() {
		defer close(c.ended)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-tick.C:
				c.mu.Lock()
				c.next++
				id := 1000 + c.next
				c.sent[id] = time.Now()
				c.mu.Unlock()
				c.write(map[string]any{"t": "emit", "room": "lobby", "event": "chat", "data": "hello", "id": id})
			}
		}
	}()
	return c
}

func (c *chatter) write(v any) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.WriteJSON(v)
}

func (c *chatter) read() {
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			close(c.frames)
			return
		}
		var f map[string]any
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		if id, ok := f["id"].(float64); ok && f["t"] == "ack" && id > 1000 {
			c.mu.Lock()
			if at, ok := c.sent[uint64(id)]; ok {
				c.lat = append(c.lat, time.Since(at))
				delete(c.sent, uint64(id))
			}
			c.mu.Unlock()
			continue
		}
		if f["t"] == "event" || f["t"] == "presence" || f["t"] == "ack" && f["id"] != float64(2) {
			continue
		}
		select {
		case c.frames <- f:
		default:
		}
	}
}

// upload sends size random bytes in binary chunks as the protocol says,
// and waits for upload.done.
func (c *chatter) upload(t *testing.T, size int) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	c.write(map[string]any{"t": "upload.open", "id": 2, "room": "lobby", "name": "report.bin", "size": size, "sha256": hex.EncodeToString(sum[:])})
	var upload string
	var window, durable int64
	sent := int64(0)
	deadline := time.After(30 * time.Second)
	for {
		for upload != "" && sent < int64(size) && sent < durable+window {
			n := min(int64(256<<10), int64(size)-sent, durable+window-sent)
			msg := protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: upload, Offset: sent})
			c.wmu.Lock()
			err := c.ws.WriteMessage(websocket.BinaryMessage, append(msg, data[sent:sent+n]...))
			c.wmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			sent += n
		}
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("the normal user's connection ended")
			}
			switch f["t"] {
			case "ack": // the grant
				g := f["data"].(map[string]any)
				upload = g["upload"].(string)
				window = int64(g["window"].(float64))
			case "upload.progress":
				durable = int64(f["offset"].(float64))
			case "upload.done":
				return
			case "error":
				t.Fatalf("the normal user's upload: %v", f)
			}
		case <-deadline:
			t.Fatalf("the normal user's upload did not complete (%d of %d sent)", sent, size)
		}
	}
}

func (c *chatter) latencies() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(slices.Values(c.lat))
}

func (c *chatter) stop() {
	close(c.done)
	<-c.ended
	c.ws.Close()
}

// attackPings floods WebSocket pings and never reads.
func attackPings(t *testing.T, addr string) string {
	ws := mustDialFrom(t, addr, "127.0.0.2")
	defer ws.Close()
	nc := ws.NetConn()
	ping := []byte{0x89, 0x80 | 125, 1, 2, 3, 4}
	ping = append(ping, make([]byte, 125)...)
	batch := slices.Repeat(ping, 1000)
	end := time.Now().Add(2 * time.Second)
	n := 0
	_ = nc.SetWriteDeadline(end.Add(time.Second))
	for time.Now().Before(end) {
		if _, err := nc.Write(batch); err != nil {
			break
		}
		n += 1000
	}
	return fmt.Sprintf("%d pings sent", n)
}

// attackHistory joins fresh rooms and sends 500 kB events to each, reading
// what comes back.
func attackHistory(t *testing.T, addr string) string {
	a := newAttacker(t, addr, "127.0.0.2")
	big := strings.Repeat("x", 500_000)
	end := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		room := fmt.Sprint("flood-", i%90)
		_ = a.ws.WriteJSON(map[string]any{"t": "join", "room": room, "id": 2*i + 1})
		// except_self: the attacker reads only answers, so it is refused for
		// its history, not dropped as a slow reader of its own events.
		if a.ws.WriteJSON(map[string]any{"t": "emit", "room": room, "event": "x", "data": big, "except_self": true, "id": 2*i + 2}) != nil {
			break
		}
	}
	codes, _ := a.finish(300 * time.Millisecond)
	if codes[protocol.CodeOverQuota] == 0 {
		t.Errorf("history flood never refused: %v", codes)
	}
	return fmt.Sprintf("refusals %v", codes)
}

// attackConnections opens WebSocket connections from one address until
// refused.
func attackConnections(t *testing.T, addr string) string {
	var open []*websocket.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	refused := 0
	for range 300 {
		ws, resp, err := wsFrom(addr, "127.0.0.3")
		if err != nil {
			if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
				refused++
				continue
			}
			continue // reset by the listener
		}
		open = append(open, ws)
	}
	if len(open) > 200 || refused == 0 {
		t.Errorf("%d connections from one address admitted, %d refused with 429; want at most 200", len(open), refused)
	}
	return fmt.Sprintf("%d admitted, %d refused with 429", len(open), refused)
}

// attackSockets opens TCP connections from one address and never uses
// them.
func attackSockets(t *testing.T, addr string) string {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}
	for range 1000 {
		if c, err := d.Dial("tcp", addr); err == nil {
			conns = append(conns, c)
		}
	}
	// Those the server kept are still open after a while; the others read
	// EOF or a reset at once.
	kept := 0
	var wg sync.WaitGroup
	var kmu sync.Mutex
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				kmu.Lock()
				kept++
				kmu.Unlock()
			}
		})
	}
	wg.Wait()
	if kept > 200+64 {
		t.Errorf("the server kept %d unused sockets from one address, want at most %d", kept, 200+64)
	}
	return fmt.Sprintf("%d of 1000 sockets kept", kept)
}

// attackMailboxes sends direct messages to users who do not exist.
func attackMailboxes(t *testing.T, addr string) string {
	a := newAttacker(t, addr, "127.0.0.2")
	payload := strings.Repeat("y", 50_000)
	for i := range 400 {
		if a.ws.WriteJSON(map[string]any{"t": "emit", "user": fmt.Sprint("u_madeup", i), "event": "dm", "data": payload, "id": i + 1}) != nil {
			break
		}
	}
	codes, _ := a.finish(300 * time.Millisecond)
	if codes[protocol.CodeOverQuota] == 0 {
		t.Errorf("direct messages to made-up users never refused: %v", codes)
	}
	return fmt.Sprintf("refusals %v", codes)
}

// attackUnpaced sends chunks for an unknown upload and received frames as
// fast as it can.
func attackUnpaced(t *testing.T, addr string) string {
	var out []string
	for _, frame := range [][]byte{
		protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: "u_nothing"}),
		[]byte(`{"t":"received","room":"lobby","seq":1}`),
	} {
		a := newAttacker(t, addr, "127.0.0.2")
		mt := websocket.BinaryMessage
		if frame[0] == '{' {
			mt = websocket.TextMessage
		}
		for range 20_000 {
			if a.ws.WriteMessage(mt, frame) != nil {
				break
			}
		}
		_, code := a.finish(5 * time.Second)
		if code != protocol.CloseFlood {
			t.Errorf("flood of %.20q: close %d, want 4502", frame, code)
		}
		out = append(out, fmt.Sprintf("closed %d", code))
	}
	return strings.Join(out, ", ")
}

// attackTables fills the message-id and receipt tables.
func attackTables(t *testing.T, addr string) string {
	a := newAttacker(t, addr, "127.0.0.5")
	_ = a.ws.WriteJSON(map[string]any{"t": "join", "room": "tables", "id": 1})
	end := time.Now().Add(2 * time.Second)
	n := 0
	for ; time.Now().Before(end); n++ {
		if a.ws.WriteJSON(map[string]any{"t": "emit", "room": "tables", "event": "x", "msg_id": base64.RawURLEncoding.EncodeToString(fmt.Append(nil, n)), "receipt": true}) != nil {
			break
		}
	}
	codes, _ := a.finish(0)
	return fmt.Sprintf("%d emits with ids and receipts, refusals %v", n, codes)
}

// attacker is one attacking WebSocket connection whose answers are read,
// and their error codes counted, until finish.
type attacker struct {
	ws    *websocket.Conn
	codes map[string]int // written by the reader until done is closed
	close int            // the server's close code, once done is closed
	done  chan struct{}
}

func newAttacker(t *testing.T, addr, from string) *attacker {
	t.Helper()
	a := &attacker{ws: mustDialFrom(t, addr, from), codes: map[string]int{}, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			_, b, err := a.ws.ReadMessage()
			if ce, ok := err.(*websocket.CloseError); ok {
				a.close = ce.Code
				return
			}
			if err != nil {
				return
			}
			var f struct{ T, Code string }
			if json.Unmarshal(b, &f) == nil && f.T == "error" {
				a.codes[f.Code]++
			}
		}
	}()
	return a
}

// finish waits up to linger for the server to answer or close, then closes
// the connection and returns the error codes counted and the close code
// (0 without a close frame).
func (a *attacker) finish(linger time.Duration) (map[string]int, int) {
	select {
	case <-a.done:
	case <-time.After(linger):
	}
	a.ws.Close()
	<-a.done
	return a.codes, a.close
}

func mustDialFrom(t *testing.T, addr, from string) *websocket.Conn {
	t.Helper()
	ws, _, err := wsFrom(addr, from)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// wsFrom dials ferry's WebSocket from a loopback address (Linux routes all
// of 127.0.0.0/8 to the loopback interface: each is another client).
func wsFrom(addr, from string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}
	return d.Dial("ws://"+addr+"/ws", nil)
}
