package client

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/server"
)

// faultEvent is the data of the events the fault-injection test sends: the
// sender and its own counter.
type faultEvent struct {
	S int `json:"s"`
	N int `json:"n"`
}

// faultReceiver collects what one receiver's handlers saw.
type faultReceiver struct {
	c     *Client
	proxy *proxy

	mu       sync.Mutex
	got      []faultEvent
	unique   map[faultEvent]bool
	replayed int
	rejoins  int
	gaps     int
	done     chan struct{} // closed once every event was seen
}

// Senders emit events to one room while the connections of receivers and
// senders are cut at random moments. Every receiver must see every event
// exactly once, in each sender's order: the receivers catch up from their
// position after each reconnection, the senders resend what was not acked
// under the same message id, and the server keeps enough history and
// dedups the resends.
func TestExactlyOnceUnderFaults(t *testing.T) {
	const (
		senders    = 4
		perSender  = 2500
		receivers  = 3
		total      = senders * perSender
		room       = "faults"
		maxSilence = 20 * time.Second
	)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s := startServer(t, server.Config{
		History: rooms.Config{HistorySize: 2 * total},
		Rate:    1e6, RateBurst: 1e6,
	})
	quiet := func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
		c.Reconnect = Backoff{Initial: 5 * time.Millisecond, Max: 40 * time.Millisecond}
	}

	rxs := make([]*faultReceiver, receivers)
	for i := range rxs {
		p := newProxy(t, s.URL)
		r := &faultReceiver{proxy: p, unique: make(map[faultEvent]bool), done: make(chan struct{})}
		r.c = dial(t, p.URL(), fmt.Sprintf("rx%d", i), quiet)
		r.c.On("n", func(e Event) {
			var fe faultEvent
			if err := e.Decode(&fe); err != nil {
				t.Errorf("event data %s: %v", e.Data, err)
				return
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.got = append(r.got, fe)
			r.unique[fe] = true
			if len(r.unique) == total && r.done != nil {
				close(r.done)
				r.done = nil
			}
		})
		r.c.OnJoined(func(j protocol.Joined) {
			if j.Recovery == "" {
				return // the first join
			}
			r.mu.Lock()
			r.rejoins++
			r.replayed += j.Replayed
			r.mu.Unlock()
		})
		r.c.OnGap(func(g protocol.Gap) {
			r.mu.Lock()
			r.gaps++
			r.mu.Unlock()
		})
		if _, err := r.c.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		rxs[i] = r
	}
	waitAll := make([]chan struct{}, receivers)
	for i, r := range rxs {
		waitAll[i] = r.done
	}

	txProxies := make([]*proxy, senders)
	txs := make([]*Client, senders)
	for i := range txs {
		txProxies[i] = newProxy(t, s.URL)
		txs[i] = dial(t, txProxies[i].URL(), fmt.Sprintf("tx%d", i), quiet)
		if _, err := txs[i].Join(ctx, room); err != nil {
			t.Fatal(err)
		}
	}

	var duplicates atomic.Int64 // acks saying a resend was published before
	var wg sync.WaitGroup
	sending := make(chan struct{})
	for i, tx := range txs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perSender {
				d, err := tx.Publish(ctx, Target{Room: room}, "n", faultEvent{S: i, N: n})
				if err != nil {
					t.Errorf("sender %d, event %d: %v", i, n, err)
					return
				}
				if d.Duplicate {
					duplicates.Add(1)
				}
			}
		}()
	}
	go func() { wg.Wait(); close(sending) }()

	// Cut connections at random moments while the senders send: mostly
	// receivers', sometimes senders'.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))
	var rxCuts, txCuts int
	start := time.Now()
chaos:
	for {
		select {
		case <-sending:
			break chaos
		case <-time.After(time.Duration(30+rng.IntN(90)) * time.Millisecond):
		}
		if rng.IntN(4) == 0 {
			txProxies[rng.IntN(senders)].cut()
			txCuts++
		} else {
			rxs[rng.IntN(receivers)].proxy.cut()
			rxCuts++
		}
	}
	sent := time.Since(start)
	timeout := time.After(maxSilence)
	for i, ch := range waitAll {
		select {
		case <-ch:
		case <-timeout:
			t.Errorf("receiver %d still misses events %v after the senders finished", i, maxSilence)
		}
	}
	// Anything repeated late would show up now.
	time.Sleep(100 * time.Millisecond)

	t.Logf("%d events from %d senders in %v; %d receiver cuts, %d sender cuts, %d resends acked as duplicates",
		total, senders, sent.Round(time.Millisecond), rxCuts, txCuts, duplicates.Load())
	var replayedAll, rejoinsAll int
	for i, r := range rxs {
		r.mu.Lock()
		counts := make(map[faultEvent]int, total)
		next := make([]int, senders)
		disorder := 0
		for _, fe := range r.got {
			counts[fe]++
			if counts[fe] > 1 {
				continue
			}
			if fe.N != next[fe.S] {
				disorder++
			}
			next[fe.S] = fe.N + 1
		}
		lost, dup := 0, 0
		for s := range senders {
			for n := range perSender {
				switch c := counts[faultEvent{S: s, N: n}]; {
				case c == 0:
					lost++
				case c > 1:
					dup += c - 1
				}
			}
		}
		t.Logf("receiver %d: %d events handled; lost %d, duplicated %d, out of order %d; %d reconnections, %d events replayed, %d gaps",
			i, len(r.got), lost, dup, disorder, r.rejoins, r.replayed, r.gaps)
		if lost != 0 || dup != 0 || disorder != 0 || r.gaps != 0 {
			t.Errorf("receiver %d: lost %d, duplicated %d, out of order %d, gaps %d; want none", i, lost, dup, disorder, r.gaps)
		}
		replayedAll += r.replayed
		rejoinsAll += r.rejoins
		r.mu.Unlock()
		if pos, ok := r.c.Position(room); !ok || pos.Seq != total {
			t.Errorf("receiver %d ends at %+v (%v), want seq %d", i, pos, ok, total)
		}
	}
	// The faults must have happened for the test to mean anything.
	if rxCuts == 0 || txCuts == 0 || rejoinsAll == 0 || replayedAll == 0 {
		t.Errorf("too few faults: %d receiver cuts, %d sender cuts, %d reconnections, %d events replayed", rxCuts, txCuts, rejoinsAll, replayedAll)
	}
}

// A receiver away for longer than the room's history hears of the events
// it lost, as a gap before the events still kept, and its rejoin reports
// the recovery; a position from another life of the stream is reported too.
func TestGapLargerThanHistory(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{History: rooms.Config{HistorySize: 5}})
	p := newProxy(t, s.URL)
	rx := dial(t, p.URL(), "rx", withBackoff(Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}))
	tx := dial(t, s.URL, "tx")
	seen := make(chan string, 64) // events and gaps, in the order handlers saw them
	rejoins := make(chan protocol.Joined, 4)
	rx.On("n", func(e Event) { seen <- fmt.Sprintf("event %s@%d", e.Data, e.Seq) })
	rx.OnGap(func(g protocol.Gap) { seen <- fmt.Sprintf("gap %s %d-%d", g.Reason, g.From, g.To) })
	rx.OnJoined(func(j protocol.Joined) {
		if j.Recovery != "" {
			rejoins <- j
		}
	})
	r := record(rx)
	for _, c := range []*Client{rx, tx} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	emit := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if err := tx.Emit(ctx, "lobby", "n", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	emit(1, 3)
	for i := 1; i <= 3; i++ {
		if got, want := next(t, seen), fmt.Sprintf("event %d@%d", i, i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	epoch := ""
	if pos, ok := rx.Position("lobby"); !ok || pos.Seq != 3 || pos.Epoch == "" {
		t.Fatalf("position %+v, %v; want seq 3", pos, ok)
	} else {
		epoch = pos.Epoch
	}

	// rx is cut off while 17 more events go by; the room keeps 5.
	p.setDown(true)
	p.cut()
	r.until(t, LifecycleConnectError)
	emit(4, 20)
	p.setDown(false)
	want := []string{"gap history 4-15"}
	for i := 16; i <= 20; i++ {
		want = append(want, fmt.Sprintf("event %d@%d", i, i))
	}
	for _, w := range want {
		if got := next(t, seen); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
	j := next(t, rejoins)
	if j.Recovery != "history" || j.Replayed != 5 || j.Seq != 20 || j.Epoch != epoch {
		t.Errorf("rejoin %+v, want recovery history, 5 replayed, at seq 20", j)
	}
	r.until(t, LifecycleReconnect)
	if pos, ok := rx.Position("lobby"); !ok || pos != (protocol.Position{Epoch: epoch, Seq: 20}) {
		t.Errorf("position after the gap %+v, want %s/20", pos, epoch)
	}

	// A position from another epoch: everything kept comes after the gap.
	late := dial(t, s.URL, "late")
	gaps := make(chan protocol.Gap, 1)
	late.OnGap(func(g protocol.Gap) { gaps <- g })
	jl, err := late.JoinFrom(ctx, "lobby", protocol.Position{Epoch: "gone", Seq: 7})
	if err != nil {
		t.Fatal(err)
	}
	if jl.Recovery != "epoch" || jl.Replayed != 5 {
		t.Errorf("JoinFrom another epoch: %+v", jl)
	}
	if g := next(t, gaps); g.Reason != "epoch" || g.Epoch != epoch {
		t.Errorf("gap %+v", g)
	}
	none(t, seen, 50*time.Millisecond)
}

// JoinFrom resumes exactly after a saved position, and Position follows
// the events handled.
func TestJoinFromSavedPosition(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	tx := dial(t, s.URL, "tx")
	if _, err := tx.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		if err := tx.Emit(ctx, "lobby", "n", i); err != nil {
			t.Fatal(err)
		}
	}
	first := dial(t, s.URL, "reader")
	saved := make(chan protocol.Position, 8)
	first.On("n", func(e Event) { saved <- e.Position() })
	j, err := first.JoinFrom(ctx, "lobby", protocol.Position{Epoch: "", Seq: 0})
	if err != nil {
		t.Fatal(err)
	}
	if j.Recovery != "epoch" || j.Seq != 6 {
		t.Fatalf("join from nothing: %+v", j)
	}
	var pos protocol.Position
	for range 4 {
		pos = next(t, saved)
	}
	// Stop after the fourth, as a process that dies would.
	closeAndWait(t, first)

	again := dial(t, s.URL, "reader")
	got := make(chan string, 8)
	again.On("n", func(e Event) { got <- string(e.Data) })
	j, err = again.JoinFrom(ctx, "lobby", pos)
	if err != nil {
		t.Fatal(err)
	}
	if j.Recovery != "ok" || j.Replayed != 2 {
		t.Errorf("resume: %+v, want ok with 2 replayed", j)
	}
	for _, want := range []string{"5", "6"} {
		if g := next(t, got); g != want {
			t.Fatalf("got event %s, want %s", g, want)
		}
	}
	none(t, got, 50*time.Millisecond)
	deadline := time.Now().Add(waitFor)
	for {
		p, ok := again.Position("lobby")
		if ok && p.Seq == 6 && p.Epoch == pos.Epoch {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("position %+v, %v; want seq 6", p, ok)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := again.Leave(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if p, ok := again.Position("lobby"); ok {
		t.Errorf("position %+v after Leave", p)
	}
}

// Direct messages sent to a user with no connection wait for them and
// arrive right after the welcome; the client confirms them, and the sender
// hears of it.
func TestOfflineDirectMessages(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	bob := dial(t, s.URL, "bob")
	user, token, conn := bob.User(), bob.Token(), bob.ID()
	closeAndWait(t, bob)
	alice := dial(t, s.URL, "alice")
	receipts := make(chan protocol.Receipt, 8)
	alice.OnReceipt(func(r protocol.Receipt) { receipts <- r })
	// Wait until the server has seen bob go.
	deadline := time.Now().Add(waitFor)
	for {
		if _, err := alice.EmitTo(ctx, Target{Conn: conn}, "probe", nil); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's connection is still there")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var seqs []uint64
	for i := range 3 {
		d, err := alice.Publish(ctx, Target{User: user}, "dm", i, WithReceipt())
		if err != nil {
			t.Fatal(err)
		}
		if !d.Queued || d.Delivered != 0 || d.Seq == 0 {
			t.Fatalf("ack %+v, want queued", d)
		}
		seqs = append(seqs, d.Seq)
	}

	back, err := New(Config{URL: s.URL, Token: token, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndWait(t, back) })
	if back.State() != StateIdle {
		t.Errorf("state before Connect: %v", back.State())
	}
	events := make(chan Event, 8)
	back.OnAny(func(e Event) { events <- e })
	if err := back.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := back.Connect(ctx); err == nil {
		t.Error("a second Connect succeeded")
	}
	for i := range 3 {
		e := next(t, events)
		if e.Name != "dm" || string(e.Data) != fmt.Sprint(i) || e.Room != "user:"+user || !e.Receipt || e.Seq != seqs[i] {
			t.Fatalf("message %d: %+v", i, e)
		}
	}
	got := map[uint64]bool{}
	for range 3 {
		r := next(t, receipts)
		if r.User != user || r.Count != 1 || r.Room != "user:"+user {
			t.Errorf("receipt %+v", r)
		}
		got[r.Seq] = true
	}
	for _, seq := range seqs {
		if !got[seq] {
			t.Errorf("no receipt for seq %d", seq)
		}
	}
	rs, err := alice.Receipts(ctx, "user:"+user, seqs[0])
	if err != nil || rs.Count != 1 || len(rs.Users) != 1 || rs.Users[0].User != user {
		t.Errorf("Receipts = %+v, %v", rs, err)
	}
}
