package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/server"
)

func num(f frame, key string) uint64 {
	v, _ := f[key].(float64)
	return uint64(v)
}

func TestJoinSinceReplaysMissedEvents(t *testing.T) {
	_, url := startServer(t, server.Config{History: rooms.Config{HistorySize: 5}})
	a := dial(t, url)
	b := dial(t, url)
	j := a.mustAck(frame{"t": "join", "room": "r"})["data"].(map[string]any)
	epoch := j["epoch"].(string)
	if epoch == "" || j["seq"] != float64(0) {
		t.Fatalf("join ack %v", j)
	}
	b.mustAck(frame{"t": "join", "room": "r"})
	for i := 1; i <= 3; i++ {
		ack := b.mustAck(frame{"t": "emit", "room": "r", "event": "n", "data": i})["data"].(map[string]any)
		if ack["seq"] != float64(i) || ack["epoch"] != epoch {
			t.Fatalf("emit ack %v", ack)
		}
	}
	// A second connection of a, as after a reconnect, resumes after seq 1.
	a2 := dial(t, url+"?token="+a.welcome.Token)
	ack := a2.mustAck(frame{"t": "join", "room": "r", "since": frame{"epoch": epoch, "seq": 1}})
	d := ack["data"].(map[string]any)
	if d["recovery"] != "ok" || d["replayed"] != float64(2) || d["seq"] != float64(3) {
		t.Fatalf("recovery ack %v", d)
	}
	for want := uint64(2); want <= 3; want++ {
		ev := a2.readType("event")
		if num(ev, "seq") != want || ev["data"] != float64(want) || ev["epoch"] != epoch {
			t.Fatalf("replayed %v, want seq %d", ev, want)
		}
	}

	// More than the history keeps: a gap frame says what is lost.
	for i := 4; i <= 12; i++ {
		b.mustAck(frame{"t": "emit", "room": "r", "event": "n", "data": i})
	}
	a3 := dial(t, url)
	d = a3.mustAck(frame{"t": "join", "room": "r", "since": frame{"epoch": epoch, "seq": 3}})["data"].(map[string]any)
	if d["recovery"] != "history" || d["replayed"] != float64(5) {
		t.Fatalf("gap ack %v", d)
	}
	gap := a3.readType("gap")
	if gap["reason"] != "history" || num(gap, "from") != 4 || num(gap, "to") != 7 {
		t.Fatalf("gap %v", gap)
	}
	for want := uint64(8); want <= 12; want++ {
		if ev := a3.readType("event"); num(ev, "seq") != want {
			t.Fatalf("after gap %v, want %d", ev, want)
		}
	}

	// A position from another epoch (a lost history) is reported as such.
	a4 := dial(t, url)
	d = a4.mustAck(frame{"t": "join", "room": "r", "since": frame{"epoch": "gone", "seq": 3}})["data"].(map[string]any)
	if d["recovery"] != "epoch" {
		t.Fatalf("epoch ack %v", d)
	}
	if gap := a4.readType("gap"); gap["reason"] != "epoch" || gap["epoch"] != epoch {
		t.Fatalf("epoch gap %v", gap)
	}
}

func TestHistoryOutlivesMembers(t *testing.T) {
	_, url := startServer(t, server.Config{})
	a := dial(t, url)
	a.mustAck(frame{"t": "join", "room": "quiet"})
	ack := a.mustAck(frame{"t": "emit", "room": "quiet", "event": "note", "data": "left for later"})["data"].(map[string]any)
	a.mustAck(frame{"t": "leave", "room": "quiet"})
	// Nobody is in the room now; someone coming back catches up.
	b := dial(t, url)
	d := b.mustAck(frame{"t": "join", "room": "quiet", "since": frame{"epoch": ack["epoch"], "seq": 0}})["data"].(map[string]any)
	if d["recovery"] != "ok" || d["replayed"] != float64(1) {
		t.Fatalf("join ack %v", d)
	}
	if ev := b.readType("event"); ev["data"] != "left for later" {
		t.Fatalf("event %v", ev)
	}
}

func TestMsgIDDedup(t *testing.T) {
	_, url := startServer(t, server.Config{})
	a := dial(t, url)
	b := dial(t, url)
	a.mustAck(frame{"t": "join", "room": "r"})
	b.mustAck(frame{"t": "join", "room": "r"})
	first := a.mustAck(frame{"t": "emit", "room": "r", "event": "e", "msg_id": "m-1", "data": 1})["data"].(map[string]any)
	// The same id from another connection of the same user, as after a
	// reconnect when the ack was lost.
	a2 := dial(t, url+"?token="+a.welcome.Token)
	a2.mustAck(frame{"t": "join", "room": "r"})
	again := a2.mustAck(frame{"t": "emit", "room": "r", "event": "e", "msg_id": "m-1", "data": 1})["data"].(map[string]any)
	if again["duplicate"] != true || again["seq"] != first["seq"] {
		t.Fatalf("resend ack %v, first %v", again, first)
	}
	b.mustAck(frame{"t": "emit", "room": "r", "event": "e", "msg_id": "m-1", "data": 2}) // another user's id space
	got := 0
	for i := 0; i < 2; i++ {
		ev := b.readType("event")
		if ev["msg_id"] == "m-1" {
			got++
		}
	}
	if got != 2 {
		t.Fatalf("b saw %d events with msg_id m-1, want 2 (one per user)", got)
	}
	b.send(frame{"t": "ping", "ts": 1})
	if f := b.readType("pong"); f == nil {
		t.Fatal("no pong")
	}
}

func TestOfflineDirectMessages(t *testing.T) {
	_, url := startServer(t, server.Config{History: rooms.Config{OfflineTTL: 300 * time.Millisecond, HistoryTTL: 200 * time.Millisecond}})
	bob := dial(t, url+"?name=bob")
	bobUser, bobToken := bob.welcome.User, bob.welcome.Token
	bob.ws.Close()
	alice := dial(t, url+"?name=alice")
	// Wait until the server has seen bob go.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := alice.request(frame{"t": "emit", "conn": bob.welcome.Conn, "event": "probe"})
		if r["t"] == "error" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's connection still registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		d := alice.mustAck(frame{"t": "emit", "user": bobUser, "event": "dm", "data": i, "receipt": true})["data"].(map[string]any)
		if d["queued"] != true || d["delivered"] != float64(0) {
			t.Fatalf("offline emit ack %v", d)
		}
	}
	back := dial(t, url+"?token="+bobToken)
	for i := 0; i < 3; i++ {
		ev := back.readType("event")
		if ev["event"] != "dm" || ev["data"] != float64(i) || ev["room"] != "user:"+bobUser || ev["receipt"] != true {
			t.Fatalf("waiting message %v", ev)
		}
		back.send(frame{"t": "received", "room": ev["room"], "seq": ev["seq"]})
		rc := alice.readType("receipt")
		if rc["user"] != bobUser || rc["count"] != float64(1) {
			t.Fatalf("receipt %v", rc)
		}
	}
	// Messages left waiting past the TTL are delivered to nobody.
	back.ws.Close()
	time.Sleep(100 * time.Millisecond)
	alice.mustAck(frame{"t": "emit", "user": bobUser, "event": "dm", "data": "late", "receipt": true})
	time.Sleep(700 * time.Millisecond)
	late := dial(t, url+"?token="+bobToken)
	late.send(frame{"t": "ping", "ts": 1})
	if f := late.read(); f["t"] != "pong" {
		t.Fatalf("expired message delivered: %v", f)
	}
	alice.send(frame{"t": "ping", "ts": 2})
	if f := alice.read(); f["t"] != "pong" {
		t.Fatalf("sender got %v for an expired message", f)
	}
}

func TestReceipts(t *testing.T) {
	_, url := startServer(t, server.Config{})
	sender := dial(t, url)
	sender.mustAck(frame{"t": "join", "room": "r"})
	var readers []*peer
	for i := 0; i < 3; i++ {
		p := dial(t, fmt.Sprintf("%s?name=r%d", url, i))
		p.mustAck(frame{"t": "join", "room": "r"})
		readers = append(readers, p)
	}
	d := sender.mustAck(frame{"t": "emit", "room": "r", "event": "photo", "data": "x", "receipt": true, "except_self": true})["data"].(map[string]any)
	seq := d["seq"]
	for i, p := range readers {
		ev := p.readType("event")
		if ev["receipt"] != true {
			t.Fatalf("event %v", ev)
		}
		p.send(frame{"t": "received", "room": "r", "seq": seq})
		p.send(frame{"t": "received", "room": "r", "seq": seq}) // twice counts once
		rc := sender.readType("receipt")
		if rc["count"] != float64(i+1) || rc["user"] != p.welcome.User {
			t.Fatalf("receipt %v", rc)
		}
	}
	r := sender.mustAck(frame{"t": "receipts", "room": "r", "seq": seq})["data"].(map[string]any)
	if r["count"] != float64(3) || len(r["users"].([]any)) != 3 {
		t.Fatalf("receipts %v", r)
	}
	outsider := dial(t, url)
	outsider.mustError(frame{"t": "receipts", "room": "r", "seq": seq}, "not_member")
	outsider.mustError(frame{"t": "received", "room": "r", "seq": seq}, "not_member")
}

// A catch-up larger than the send queue is delivered whole: the queue's cap
// is for live traffic a client does not read, and the history is bounded
// on its own.
func TestCatchUpLargerThanSendQueue(t *testing.T) {
	_, url := startServer(t, server.Config{MaxQueue: 64 << 10, Rate: 1e6, RateBurst: 1e6,
		History: rooms.Config{HistorySize: 100, HistoryBytes: 1 << 20}})
	pub := dial(t, url)
	j := pub.mustAck(frame{"t": "join", "room": "r"})["data"].(map[string]any)
	pad := strings.Repeat("x", 2<<10)
	const events = 100 // 200 KiB of history, three times the queue
	for i := 1; i <= events; i++ {
		pub.mustAck(frame{"t": "emit", "room": "r", "event": "n", "data": pad, "except_self": true})
	}
	late := dial(t, url)
	d := late.mustAck(frame{"t": "join", "room": "r", "since": frame{"epoch": j["epoch"], "seq": 0}})["data"].(map[string]any)
	if d["replayed"] != float64(events) {
		t.Fatalf("join ack %v", d)
	}
	for want := uint64(1); want <= events; want++ {
		if ev := late.readType("event"); num(ev, "seq") != want {
			t.Fatalf("replayed %v, want seq %d", ev, want)
		}
	}
	late.send(frame{"t": "ping", "ts": 1})
	if f := late.readType("pong"); f["ts"] != float64(1) {
		t.Fatalf("after the catch-up: %v", f)
	}
}
