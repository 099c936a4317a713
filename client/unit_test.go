package client

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

func TestBackoffDelay(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name string
		b    Backoff
		n    int
		r    float64
		want time.Duration
	}{
		{"first, middle", Backoff{}, 1, 0.5, time.Second},
		{"first, lowest", Backoff{}, 1, 0, 500 * ms},
		{"first, highest", Backoff{}, 1, 0.999999, 1499999 * time.Microsecond},
		{"second", Backoff{}, 2, 0.5, 2 * time.Second},
		{"third, lowest", Backoff{}, 3, 0, 2 * time.Second},
		{"third, highest is capped", Backoff{}, 3, 0.99, 5 * time.Second},
		{"fourth, lowest", Backoff{}, 4, 0, 4 * time.Second},
		{"fourth, middle is capped", Backoff{}, 4, 0.5, 5 * time.Second},
		{"far out", Backoff{}, 5000, 0.5, 5 * time.Second},
		{"attempt 0 counts as 1", Backoff{}, 0, 0.5, time.Second},
		{"no jitter", Backoff{Jitter: -1}, 2, 0, 2 * time.Second},
		{"custom", Backoff{Initial: 100 * ms, Max: time.Second, Factor: 3, Jitter: 0.2}, 3, 0, 720 * ms},
		{"factor 1", Backoff{Initial: 100 * ms, Factor: 1, Jitter: -1}, 9, 0, 100 * ms},
		{"max below initial", Backoff{Initial: 2 * time.Second, Max: time.Second, Jitter: -1}, 1, 0, 2 * time.Second},
		{"jitter over 1", Backoff{Initial: 100 * ms, Jitter: 7}, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.withDefaults().delay(tt.n, tt.r); got != tt.want {
				t.Errorf("delay(%d, %v) = %v, want %v", tt.n, tt.r, got, tt.want)
			}
		})
	}
}

func TestBackoffDelayIsRandomized(t *testing.T) {
	var b Backoff
	seen := make(map[time.Duration]bool)
	for range 1000 {
		d := b.Delay(2)
		if d < time.Second || d > 3*time.Second {
			t.Fatalf("Delay(2) = %v, want within [1s, 3s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays in 1000 draws", len(seen))
	}
	for range 100 {
		if d := b.Delay(3); d < 2*time.Second || d > 5*time.Second {
			t.Fatalf("Delay(3) = %v, want within [2s, 5s]", d)
		}
	}
}

func TestEndpoint(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"ws://127.0.0.1:8080", "ws://127.0.0.1:8080/ws"},
		{"ws://127.0.0.1:8080/", "ws://127.0.0.1:8080/ws"},
		{"ws://127.0.0.1:8080/ws", "ws://127.0.0.1:8080/ws"},
		{"http://localhost:8080", "ws://localhost:8080/ws"},
		{"https://ferry.example.com", "wss://ferry.example.com/ws"},
		{"HTTPS://ferry.example.com/ferry/", "wss://ferry.example.com/ferry/ws"},
		{"wss://ferry.example.com/ferry/ws?x=1#top", "wss://ferry.example.com/ferry/ws?x=1"},
		{"127.0.0.1:8080", "ws://127.0.0.1:8080/ws"},
		{"ftp://example.com", ""},
		{"ws://", ""},
		{"ws://bad host/", ""},
	}
	for _, tt := range tests {
		u, err := endpoint(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("endpoint(%q) = %v, want an error", tt.in, u)
		case tt.want != "" && err != nil:
			t.Errorf("endpoint(%q): %v", tt.in, err)
		case tt.want != "" && u.String() != tt.want:
			t.Errorf("endpoint(%q) = %v, want %v", tt.in, u, tt.want)
		}
	}
}

func TestDispatcherBounds(t *testing.T) {
	d := newDispatcher(2, 1<<20)
	go d.run()
	release := make(chan struct{})
	started := make(chan struct{})
	var ran []int
	d.push(func() { close(started); <-release }, true, 0)
	<-started // the blocked handler has left the queue
	for i := range 3 {
		ok := d.push(func() { ran = append(ran, i) }, true, 0)
		if want := i < 2; ok != want {
			t.Errorf("push event %d = %v, want %v", i, ok, want)
		}
	}
	// Lifecycle items get room beyond the event limit, up to twice it.
	for i := 10; i < 13; i++ {
		ok := d.push(func() { ran = append(ran, i) }, false, 0)
		if want := i < 12; ok != want {
			t.Errorf("push lifecycle %d = %v, want %v", i, ok, want)
		}
	}
	close(release)
	d.close()
	<-d.done
	if want := []int{0, 1, 10, 11}; len(ran) != len(want) || ran[0] != 0 || ran[1] != 1 || ran[2] != 10 || ran[3] != 11 {
		t.Errorf("ran %v, want %v in order", ran, want)
	}
	if d.push(func() {}, false, 0) {
		t.Error("push after close accepted")
	}
}

func TestDispatcherByteBound(t *testing.T) {
	d := newDispatcher(100, 1000)
	go d.run()
	release := make(chan struct{})
	started := make(chan struct{})
	d.push(func() { close(started); <-release }, true, 0)
	<-started
	if !d.push(func() {}, true, 2000) {
		t.Error("an event larger than the byte limit refused by an empty queue")
	}
	if d.push(func() {}, true, 10) {
		t.Error("an event accepted past the byte limit")
	}
	if !d.push(func() {}, false, 0) {
		t.Error("a lifecycle item refused for the events' bytes")
	}
	close(release)
	d.close()
	<-d.done
}

func TestRegistry(t *testing.T) {
	var r registry[int]
	var got []string
	offA := r.add("k", func(v int) { got = append(got, "a") })
	r.add("k", func(v int) { got = append(got, "b") })
	r.call("k", 1)
	offA()
	offA()
	r.call("k", 1)
	r.call("other", 1)
	if want := "a b b"; joinStrings(got) != want {
		t.Errorf("calls %q, want %q", joinStrings(got), want)
	}
}

func joinStrings(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func TestUploadPlumbing(t *testing.T) {
	ctx := testContext(t)
	f := newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
		answer(ws, func(typ int, data []byte) {
			if typ != websocket.BinaryMessage {
				return
			}
			h, hl, err := protocol.ParseChunkHeader(data)
			if err != nil {
				_ = ws.WriteJSON(protocol.ErrorFrame{T: protocol.TypeError, Code: protocol.CodeBadFrame, Message: err.Error()})
				return
			}
			end := h.Offset + int64(len(data)-hl)
			_ = ws.WriteJSON(protocol.UploadProgress{T: protocol.TypeUploadProgress, Upload: h.Upload, Offset: end})
			_ = ws.WriteJSON(protocol.ErrorFrame{T: protocol.TypeError, Code: "bad_offset", Message: "scripted", Upload: h.Upload, Offset: &end})
			_ = ws.WriteJSON(protocol.ErrorFrame{T: protocol.TypeError, Code: protocol.CodeRateLimited, Message: "scripted"})
		})
	})
	c := dial(t, f.URL, "x")
	r := record(c)
	progress := make(chan json.RawMessage, 1)
	uploadErrors := make(chan json.RawMessage, 1)
	defer c.hookFrames(protocol.TypeUploadProgress, func(b json.RawMessage) { progress <- b })()
	defer c.hookFrames(protocol.TypeError, func(b json.RawMessage) { uploadErrors <- b })()

	s, err := c.session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunk := append(protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: "up_1", Offset: 10}), "hello"...)
	if err := s.enqueue(ctx, websocket.BinaryMessage, chunk); err != nil {
		t.Fatal(err)
	}
	var p protocol.UploadProgress
	if err := json.Unmarshal(next(t, progress), &p); err != nil || p.Upload != "up_1" || p.Offset != 15 {
		t.Errorf("progress %+v, %v", p, err)
	}
	var ef protocol.ErrorFrame
	if err := json.Unmarshal(next(t, uploadErrors), &ef); err != nil || ef.Upload != "up_1" || ef.Offset == nil || *ef.Offset != 15 {
		t.Errorf("upload error %+v, %v", ef, err)
	}
	if e := next(t, r.errors); e.Code != protocol.CodeRateLimited || e.Upload != "" {
		t.Errorf("OnError got %+v, want the error that names no upload", e)
	}
}
