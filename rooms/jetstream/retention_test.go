package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// History past its time is gone after a restart, whichever side expires
// it (JetStream's MaxAge by the wall clock, or the hub's HistoryTTL by its
// own clock): some of it gone is a history gap, all of it a new epoch.
func TestRetentionTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		jcfg Config
		// hcfg makes a hub config; advance moves time on.
		clock func() (hcfg func() rooms.Config, advance func(time.Duration))
	}{
		{"JetStream's MaxAge", Config{MaxAge: 2 * time.Second}, func() (func() rooms.Config, func(time.Duration)) {
			return func() rooms.Config { return rooms.Config{HistoryTTL: time.Hour} }, time.Sleep
		}},
		{"the hub's TTL", Config{MaxAge: time.Hour}, func() (func() rooms.Config, func(time.Duration)) {
			now := time.Now()
			return func() rooms.Config {
					return rooms.Config{HistoryTTL: 2 * time.Second, Now: func() time.Time { return now }}
				}, func(d time.Duration) {
					now = now.Add(d)
				}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			hcfg, advance := tc.clock()
			n := start(t, dir, tc.jcfg, hcfg())
			alice := &member{conn: "a1", user: "alice"}
			join(t, n.hub, alice, "r", nil)
			emit(t, n.hub, alice, "r", 5) // 1-5
			advance(1200 * time.Millisecond)
			last := emit(t, n.hub, alice, "r", 5) // 6-10
			advance(time.Second)                  // 1-5 are past 2 s old, 6-10 1 s
			shutdown(t, n.emb)

			n = start(t, dir, tc.jcfg, hcfg())
			bob := &member{conn: "b1", user: "bob"}
			jn := join(t, n.hub, bob, "r", &protocol.Position{Epoch: last.Epoch, Seq: 2})
			got := bob.got(t)
			if jn.Recovery != "history" || jn.Epoch != last.Epoch || jn.Seq != 10 || len(got) == 0 {
				t.Fatalf("joined %+v with %d frames, want a history gap in %s", jn, len(got), last.Epoch)
			}
			if g := got[0]; g.T != protocol.TypeGap || g.Reason != "history" || g.From != 3 || g.To != 5 {
				t.Fatalf("first frame %+v, want the history gap 3-5", g)
			}
			if s := seqs(t, got, last.Epoch); !equal(s, span(6, 10)) {
				t.Fatalf("caught up %v, want 6-10", s)
			}
			shutdown(t, n.emb)

			advance(2 * time.Second) // all gone
			n = start(t, dir, tc.jcfg, hcfg())
			carol := &member{conn: "c1", user: "carol"}
			jn = join(t, n.hub, carol, "r", &protocol.Position{Epoch: last.Epoch, Seq: 10})
			got = carol.got(t)
			if jn.Recovery != "epoch" || jn.Epoch == last.Epoch || jn.Seq != 0 {
				t.Fatalf("joined %+v after all expired, want a new epoch at 0", jn)
			}
			if len(got) != 1 || got[0].T != protocol.TypeGap || got[0].Reason != "epoch" || got[0].Epoch != jn.Epoch {
				t.Fatalf("got %+v, want only the epoch gap", got)
			}
			if d := emit(t, n.hub, carol, "r", 1); d.Epoch != jn.Epoch || d.Seq != 1 {
				t.Fatalf("the next event is %s/%d, want %s/1", d.Epoch, d.Seq, jn.Epoch)
			}
		})
	}
}

// A room keeps at most MaxPerRoom events, and all rooms at most MaxBytes
// on disk: what is beyond is gone after a restart, with a history gap.
func TestRetentionSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		jcfg   Config
		oldest uint64 // the oldest kept, 0: any
	}{
		{"per room", Config{MaxPerRoom: 100}, 51},
		{"all rooms' bytes", Config{MaxBytes: 20_000}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n := start(t, dir, tc.jcfg, rooms.Config{})
			alice := &member{conn: "a1", user: "alice"}
			join(t, n.hub, alice, "r", nil)
			data := json.RawMessage(`"` + strings.Repeat("x", 200) + `"`)
			var last protocol.Delivered
			for range 150 {
				var err error
				if last, err = n.hub.Emit(alice, rooms.Target{Room: "r"}, "chat", data, rooms.EmitOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			info, err := n.j.stream.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tc.jcfg.MaxBytes > 0 && int64(info.State.Bytes) > tc.jcfg.MaxBytes {
				t.Fatalf("the stream holds %d bytes, more than its %d", info.State.Bytes, tc.jcfg.MaxBytes)
			}
			shutdown(t, n.emb)

			n = start(t, dir, tc.jcfg, rooms.Config{})
			bob := &member{conn: "b1", user: "bob"}
			jn := join(t, n.hub, bob, "r", &protocol.Position{Epoch: last.Epoch, Seq: 10})
			got := bob.got(t)
			if jn.Recovery != "history" || jn.Epoch != last.Epoch || jn.Seq != 150 {
				t.Fatalf("joined %+v, want a history gap in %s at 150", jn, last.Epoch)
			}
			s := seqs(t, got, last.Epoch)
			g := got[0]
			if g.T != protocol.TypeGap || g.From != 11 || len(s) == 0 || g.To != s[0]-1 || !equal(s, span(s[0], 150)) {
				t.Fatalf("gap %+v then events %v, want a gap from 11 to just before the kept events, then all to 150", g, s)
			}
			if tc.oldest != 0 && s[0] != tc.oldest {
				t.Fatalf("the oldest kept is %d, want %d", s[0], tc.oldest)
			}
			if len(s) >= 150 {
				t.Fatal("nothing was dropped")
			}
		})
	}
}

// Events emitted into one room from many goroutines reach every live
// member in one order without holes, and the replay after a restart is
// exactly what they saw.
func TestConcurrentEmitsReplayAsSeen(t *testing.T) {
	dir := t.TempDir()
	n := start(t, dir, Config{}, rooms.Config{HistorySize: 1000})
	watchers := []*member{{conn: "w1", user: "w1"}, {conn: "w2", user: "w2"}}
	for _, w := range watchers {
		join(t, n.hub, w, "busy", nil)
	}
	const senders, each = 8, 100
	var wg sync.WaitGroup
	for i := range senders {
		m := &member{conn: fmt.Sprintf("s%d", i), user: fmt.Sprintf("s%d", i)}
		join(t, n.hub, m, "busy", nil)
		wg.Go(func() {
			for k := range each {
				if _, err := n.hub.Emit(m, rooms.Target{Room: "busy"}, "chat", json.RawMessage(fmt.Sprint(k)), rooms.EmitOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	live := watchers[0].got(t)
	epoch := live[0].Epoch
	if s := seqs(t, live, epoch); !equal(s, span(1, senders*each)) {
		t.Fatalf("a live member saw %d events out of order or with holes", len(s))
	}
	if a, b := fmt.Sprint(live), fmt.Sprint(watchers[1].got(t)); a != b {
		t.Fatal("two live members saw different streams")
	}
	shutdown(t, n.emb)

	n = start(t, dir, Config{}, rooms.Config{HistorySize: 1000})
	late := &member{conn: "late", user: "late"}
	join(t, n.hub, late, "busy", &protocol.Position{Epoch: epoch, Seq: 0})
	replay := late.got(t)
	if len(replay) != len(live) {
		t.Fatalf("the replay has %d frames, the live members saw %d", len(replay), len(live))
	}
	for i := range live {
		if replay[i].JSON != live[i].JSON {
			t.Fatalf("frame %d differs:\nlive   %s\nreplay %s", i, live[i].JSON, replay[i].JSON)
		}
	}
}

// When the journal cannot be reached (its connection closed), every emit
// fails with storage_unavailable and reaches nobody: nothing is ever seen
// that the journal does not have.
func TestAppendFailure(t *testing.T) {
	n := start(t, t.TempDir(), Config{}, rooms.Config{JournalTimeout: time.Second})
	alice, bob := &member{conn: "a1", user: "alice"}, &member{conn: "b1", user: "bob"}
	join(t, n.hub, alice, "r", nil)
	join(t, n.hub, bob, "r", nil)
	emit(t, n.hub, alice, "r", 3)
	before := len(bob.got(t))
	n.emb.Conn().Close()
	for range 2 {
		_, err := n.hub.Emit(alice, rooms.Target{Room: "r"}, "chat", nil, rooms.EmitOptions{})
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.CodeStorageUnavailable {
			t.Fatalf("emit without a journal: %v", err)
		}
	}
	if after := len(bob.got(t)); after != before {
		t.Fatalf("bob got %d frames of events that were not stored", after-before)
	}
}

// Room names become subject tokens that NATS takes as one token, and
// distinct names stay distinct.
func TestEncodeRoom(t *testing.T) {
	for _, tc := range []struct{ room, token string }{
		{"lobby", "lobby"},
		{"Team-1", "Team-1"},
		{"team:1.ops", "team_3a1_2eops"},
		{"a_b", "a_5fb"},
		{"a_5fb", "a_5f5fb"},
		{"x@y", "x_40y"},
		{"...", "_2e_2e_2e"},
	} {
		if got := encodeRoom(tc.room); got != tc.token {
			t.Errorf("encodeRoom(%q) = %q, want %q", tc.room, got, tc.token)
		}
	}
	// Every character a room name may have, alone and in pairs: the
	// tokens are valid and a decoder gets the names back.
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@"
	seen := make(map[string]string)
	for _, a := range allowed {
		for _, b := range " " + allowed {
			room := strings.TrimSpace(string(a) + string(b))
			if rooms.ValidRoom(room) != nil {
				continue
			}
			token := encodeRoom(room)
			if strings.ContainsAny(token, ".*> \t\r\n:@") {
				t.Fatalf("%q became %q, not one plain token", room, token)
			}
			if other, dup := seen[token]; dup && other != room {
				t.Fatalf("%q and %q both became %q", room, other, token)
			}
			seen[token] = room
			if back := decodeRoomForTest(t, token); back != room {
				t.Fatalf("%q became %q and back %q", room, token, back)
			}
		}
	}
}

func decodeRoomForTest(t *testing.T, token string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(token); i++ {
		if token[i] != '_' {
			b.WriteByte(token[i])
			continue
		}
		var v byte
		if _, err := fmt.Sscanf(token[i+1:i+3], "%02x", &v); err != nil {
			t.Fatalf("%q: %v", token, err)
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String()
}

// Shutdown leaves no goroutine of the server or the connection behind, and
// a second Shutdown is harmless; a listener, when asked for, serves NATS
// clients.
func TestEmbeddedShutdown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen string
	}{
		{"in-process only", ""},
		{"with a listener", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			emb, err := StartEmbeddedConfig(EmbeddedConfig{Dir: t.TempDir(), Listen: tc.listen})
			if err != nil {
				t.Fatal(err)
			}
			if url := emb.ClientURL(); (url != "") != (tc.listen != "") {
				t.Fatalf("client URL %q with listen %q", url, tc.listen)
			} else if url != "" {
				nc, err := nats.Connect(url)
				if err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				nc.Close()
			}
			j, err := New(context.Background(), emb.Conn(), Config{})
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Append(context.Background(), "r", rooms.Record{Epoch: "e", Seq: 1, At: time.Now(), User: "u", JSON: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			shutdown(t, emb)
			shutdown(t, emb)
		})
	}
}

// An event larger than the server's max_payload is delivered and
// journaled as a position only: after a restart, a replay has a gap where
// it was, the same as before the restart, and the stream goes on.
func TestLargeEvent(t *testing.T) {
	dir := t.TempDir()
	hcfg := rooms.Config{HistoryBytes: 16 << 20}
	n := start(t, dir, Config{}, hcfg)
	alice := &member{conn: "a1", user: "alice"}
	join(t, n.hub, alice, "r", nil)
	big := json.RawMessage(`"` + strings.Repeat("x", embeddedMaxPayload+1) + `"`)
	for _, data := range []json.RawMessage{json.RawMessage(`1`), big, json.RawMessage(`3`)} {
		if _, err := n.hub.Emit(alice, rooms.Target{Room: "r"}, "chat", data, rooms.EmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	live := alice.got(t)
	if len(live) != 3 || len(live[1].JSON) <= embeddedMaxPayload {
		t.Fatalf("alice saw %d events live", len(live))
	}
	epoch := live[0].Epoch
	check := func(h *rooms.Hub, conn string) {
		t.Helper()
		bob := &member{conn: conn, user: "bob"}
		jn := join(t, h, bob, "r", &protocol.Position{Epoch: epoch, Seq: 0})
		got := bob.got(t)
		if jn.Recovery != "history" || jn.Epoch != epoch || jn.Seq != 3 || len(got) != 2 || got[0].From != 1 || got[0].To != 2 || got[1].Seq != 3 {
			t.Fatalf("joined %+v, caught up %+v; want the gap 1-2, then 3", jn, got)
		}
	}
	check(n.hub, "b1")
	shutdown(t, n.emb)
	n = start(t, dir, Config{}, hcfg)
	check(n.hub, "b2")
}
