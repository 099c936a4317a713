package rooms_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// memJournal is a hand-written Journal for the hub's side of the contract;
// rooms/jetstream tests the real one. It keeps every record, as a journal
// whose retention is longer than the hub's, and can be made to fail or to
// stall.
type memJournal struct {
	mu      sync.Mutex
	recs    map[string][]rooms.Record
	loads   map[string]int
	loadErr error
	appErr  error
	// stall, when set, makes Load wait for it to close (or the call's
	// context to end); loading is closed when such a Load starts.
	stall, loading chan struct{}
}

func newMemJournal() *memJournal {
	return &memJournal{recs: make(map[string][]rooms.Record), loads: make(map[string]int)}
}

func (j *memJournal) Load(ctx context.Context, room string) ([]rooms.Record, error) {
	j.mu.Lock()
	j.loads[room]++
	stall, loading, err := j.stall, j.loading, j.loadErr
	j.mu.Unlock()
	if stall != nil {
		close(loading)
		select {
		case <-stall:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	recs := j.recs[room]
	if len(recs) == 0 {
		return nil, nil
	}
	// The latest epoch's only, as the contract says.
	last := recs[len(recs)-1].Epoch
	var out []rooms.Record
	for _, r := range recs {
		if r.Epoch == last {
			out = append(out, r)
		}
	}
	return out, nil
}

func (j *memJournal) Append(ctx context.Context, room string, rec rooms.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.appErr != nil {
		return j.appErr
	}
	j.recs[room] = append(j.recs[room], rec)
	return nil
}

func (j *memJournal) set(f func(j *memJournal)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f(j)
}

func (j *memJournal) loadCount(room string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.loads[room]
}

// frame is what the tests read of a frame a member got: an event's or a
// gap's position.
type frame struct {
	T, Epoch, Reason string
	Seq, From, To    uint64
}

func frames(t *testing.T, msgs []string) []frame {
	t.Helper()
	out := make([]frame, 0, len(msgs))
	for _, m := range msgs {
		var f struct {
			T      string          `json:"t"`
			Seq    uint64          `json:"seq"`
			Epoch  string          `json:"epoch"`
			Reason string          `json:"reason"`
			From   json.RawMessage `json:"from"` // a gap's number, an event's sender
			To     uint64          `json:"to"`
		}
		if err := json.Unmarshal([]byte(m), &f); err != nil {
			t.Fatal(err)
		}
		fr := frame{T: f.T, Epoch: f.Epoch, Reason: f.Reason, Seq: f.Seq, To: f.To}
		if f.T == protocol.TypeGap && len(f.From) > 0 {
			if err := json.Unmarshal(f.From, &fr.From); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, fr)
	}
	return out
}

func emitN(t *testing.T, h *rooms.Hub, m rooms.Member, room string, n int) protocol.Delivered {
	t.Helper()
	var d protocol.Delivered
	for i := range n {
		var err error
		if d, err = h.Emit(m, rooms.Target{Room: room}, "chat", json.RawMessage(fmt.Sprint(i)), rooms.EmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func isCode(err error, code string) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && pe.Code == code
}

// A hub restarted on the same journal resumes a room's stream: a client
// with its position gets exactly what it missed, in the same epoch; a
// position from another epoch gets the epoch gap and the kept events.
func TestJournalRestoresStream(t *testing.T) {
	j := newMemJournal()
	h1 := rooms.New(rooms.Config{Journal: j})
	alice := newDeliveries("a1", "alice")
	h1.Register(alice)
	if _, err := h1.Join(alice, "lobby", nil); err != nil {
		t.Fatal(err)
	}
	last := emitN(t, h1, alice, "lobby", 10)

	for _, tc := range []struct {
		name     string
		since    protocol.Position
		recovery string
		first    frame // the first frame caught up
		events   []uint64
	}{
		{"missed some", protocol.Position{Epoch: last.Epoch, Seq: 4}, "ok", frame{T: "event", Seq: 5}, []uint64{5, 6, 7, 8, 9, 10}},
		{"missed none", protocol.Position{Epoch: last.Epoch, Seq: 10}, "ok", frame{}, nil},
		{"another epoch", protocol.Position{Epoch: "elsewhere", Seq: 4}, "epoch",
			frame{T: "gap", Reason: "epoch"}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h2 := rooms.New(rooms.Config{Journal: j}) // the restart
			bob := newDeliveries("b1", "bob")
			h2.Register(bob)
			since := tc.since
			jn, err := h2.Join(bob, "lobby", &since)
			if err != nil {
				t.Fatal(err)
			}
			if jn.Epoch != last.Epoch || jn.Seq != 10 || jn.Recovery != tc.recovery {
				t.Fatalf("joined at %s/%d recovery %q, want %s/10 %q", jn.Epoch, jn.Seq, jn.Recovery, last.Epoch, tc.recovery)
			}
			got := frames(t, bob.msgs)
			var seqs []uint64
			for _, f := range got {
				if f.T == "event" {
					seqs = append(seqs, f.Seq)
				}
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tc.events) {
				t.Fatalf("caught up events %v, want %v", seqs, tc.events)
			}
			if tc.first.T != "" && (got[0].T != tc.first.T || got[0].Reason != tc.first.Reason || (tc.first.Seq != 0 && got[0].Seq != tc.first.Seq)) {
				t.Fatalf("first frame %+v, want %+v", got[0], tc.first)
			}
		})
	}
	h3 := rooms.New(rooms.Config{Journal: j})
	carol := newDeliveries("c1", "carol")
	h3.Register(carol)
	if _, err := h3.Join(carol, "lobby", nil); err != nil {
		t.Fatal(err)
	}
	if d := emitN(t, h3, carol, "lobby", 1); d.Epoch != last.Epoch || d.Seq != 11 {
		t.Fatalf("the next event is at %s/%d, want %s/11", d.Epoch, d.Seq, last.Epoch)
	}
}

// The hub drops restored records older than its history TTL by its own
// clock: some gone make a history gap, all gone a new epoch.
func TestJournalRestoreTTL(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	j := newMemJournal()
	h1 := rooms.New(rooms.Config{Journal: j, Now: clock, HistoryTTL: time.Hour})
	alice := newDeliveries("a1", "alice")
	h1.Register(alice)
	if _, err := h1.Join(alice, "r", nil); err != nil {
		t.Fatal(err)
	}
	emitN(t, h1, alice, "r", 5) // at start
	now = start.Add(30 * time.Minute)
	last := emitN(t, h1, alice, "r", 5) // seq 6 to 10

	for _, tc := range []struct {
		name      string
		after     time.Duration
		recovery  string
		sameEpoch bool
		events    int
	}{
		{"all kept", 50 * time.Minute, "ok", true, 8},
		{"the first five expired", 70 * time.Minute, "history", true, 5},
		{"all expired", 100 * time.Minute, "epoch", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = start.Add(tc.after)
			h2 := rooms.New(rooms.Config{Journal: j, Now: clock, HistoryTTL: time.Hour})
			bob := newDeliveries("b1", "bob")
			h2.Register(bob)
			jn, err := h2.Join(bob, "r", &protocol.Position{Epoch: last.Epoch, Seq: 2})
			if err != nil {
				t.Fatal(err)
			}
			if jn.Recovery != tc.recovery || (jn.Epoch == last.Epoch) != tc.sameEpoch || jn.Replayed != tc.events {
				t.Fatalf("joined %s/%d recovery %q replayed %d; want recovery %q, same epoch %v, %d replayed",
					jn.Epoch, jn.Seq, jn.Recovery, jn.Replayed, tc.recovery, tc.sameEpoch, tc.events)
			}
			if !tc.sameEpoch && jn.Seq != 0 {
				t.Fatalf("a new epoch starts at seq %d", jn.Seq)
			}
			if tc.recovery == "history" {
				if g := frames(t, bob.msgs)[0]; g.T != "gap" || g.From != 3 || g.To != 5 {
					t.Fatalf("first frame %+v, want the gap 3-5", g)
				}
			}
		})
	}
}

// A room is loaded from the journal when first touched, not at start, and
// once; a room nobody is in leaves memory (its history is in the journal)
// and comes back with the same position.
func TestJournalLazyLoadAndEviction(t *testing.T) {
	j := newMemJournal()
	h1 := rooms.New(rooms.Config{Journal: j})
	a := newDeliveries("a1", "alice")
	h1.Register(a)
	for _, r := range []string{"one", "two"} {
		if _, err := h1.Join(a, r, nil); err != nil {
			t.Fatal(err)
		}
		emitN(t, h1, a, r, 3)
	}
	h1.Unregister(a)
	if s := h1.Stats(); s.Rooms != 0 || s.HistoryBytes != 0 {
		t.Fatalf("rooms nobody is in are still in memory: %+v", s)
	}

	h2 := rooms.New(rooms.Config{Journal: j})
	before := j.loadCount("one")
	b := newDeliveries("b1", "bob")
	h2.Register(b)
	jn, err := h2.Join(b, "two", nil)
	if err != nil {
		t.Fatal(err)
	}
	if jn.Seq != 3 {
		t.Fatalf("room two restored at seq %d, want 3", jn.Seq)
	}
	if j.loadCount("one") != before {
		t.Fatal("room one was loaded though nobody touched it")
	}
	if s := h2.Stats(); s.Rooms != 1 || s.HistoryBytes == 0 {
		t.Fatalf("after the join: %+v, want one room holding its history", s)
	}
	c := newDeliveries("c1", "carol")
	h2.Register(c)
	loads := j.loadCount("two")
	if _, err := h2.Join(c, "two", nil); err != nil {
		t.Fatal(err)
	}
	if j.loadCount("two") != loads {
		t.Fatal("a room in memory was loaded again")
	}
	h2.Unregister(b)
	h2.Unregister(c)
	h2.Sweep()
	if s := h2.Stats(); s.Rooms != 0 || s.HistoryBytes != 0 {
		t.Fatalf("after everyone left: %+v", s)
	}
	h2.Register(b)
	jn2, err := h2.Join(b, "two", nil)
	if err != nil {
		t.Fatal(err)
	}
	if jn2.Epoch != jn.Epoch || jn2.Seq != 3 || j.loadCount("two") != loads+1 {
		t.Fatalf("rejoined at %s/%d after %d loads, want %s/3 after %d", jn2.Epoch, jn2.Seq, j.loadCount("two"), jn.Epoch, loads+1)
	}
}

// A journal that fails: a join that cannot load the room fails and leaves
// the member out; an emit that cannot be stored fails, reaches nobody and
// starts the room in a new epoch, as its seq may or may not be stored.
func TestJournalFailures(t *testing.T) {
	j := newMemJournal()
	h := rooms.New(rooms.Config{Journal: j})
	a, b := newDeliveries("a1", "alice"), newDeliveries("b1", "bob")
	h.Register(a)
	h.Register(b)

	j.set(func(j *memJournal) { j.loadErr = errors.New("disk on fire") })
	if _, err := h.Join(a, "r", nil); !isCode(err, protocol.CodeStorageUnavailable) {
		t.Fatalf("join with a failing journal: %v", err)
	}
	if names, _ := h.Rooms(a); len(names) != 0 || h.Stats().Rooms != 0 {
		t.Fatalf("after the failed join: in %v, %d rooms", names, h.Stats().Rooms)
	}
	j.set(func(j *memJournal) { j.loadErr = nil })
	for _, m := range []*deliveries{a, b} {
		if _, err := h.Join(m, "r", nil); err != nil {
			t.Fatal(err)
		}
	}
	before := emitN(t, h, a, "r", 3)
	live := len(b.live)

	j.set(func(j *memJournal) { j.appErr = errors.New("timeout") })
	if _, err := h.Emit(a, rooms.Target{Room: "r"}, "chat", nil, rooms.EmitOptions{MsgID: "x-1"}); !isCode(err, protocol.CodeStorageUnavailable) {
		t.Fatalf("emit with a failing journal: %v", err)
	}
	if _, ok := h.Publish("r", rooms.FileEvent, nil, protocol.From{User: "alice"}, true); ok {
		t.Fatal("a server publish with a failing journal reported success")
	}
	if len(b.live) != live {
		t.Fatalf("bob saw %d frames of events that were not stored", len(b.live)-live)
	}
	j.set(func(j *memJournal) { j.appErr = nil })
	// The id of the failed emit was forgotten: the resend is published.
	d, err := h.Emit(a, rooms.Target{Room: "r"}, "chat", nil, rooms.EmitOptions{MsgID: "x-1"})
	if err != nil || d.Duplicate {
		t.Fatalf("resend after the failure: %+v, %v", d, err)
	}
	if d.Epoch == before.Epoch || d.Seq != 1 {
		t.Fatalf("after a failed append the room goes on at %s/%d, want seq 1 of a new epoch", d.Epoch, d.Seq)
	}
	// A client resuming from the old epoch learns it.
	c := newDeliveries("c1", "carol")
	h.Register(c)
	jn, err := h.Join(c, "r", &protocol.Position{Epoch: before.Epoch, Seq: 3})
	if err != nil || jn.Recovery != "epoch" {
		t.Fatalf("join from the old epoch: %+v, %v", jn, err)
	}
}

// A journal that stalls on one room stalls that room only: other rooms,
// the hub's bookkeeping and the sweep go on.
func TestJournalStallIsolated(t *testing.T) {
	j := newMemJournal()
	h := rooms.New(rooms.Config{Journal: j, JournalTimeout: time.Minute})
	a, b := newDeliveries("a1", "alice"), &syncDeliveries{deliveries: newDeliveries("b1", "bob")}
	h.Register(a)
	h.Register(b)
	if _, err := h.Join(a, "fast", nil); err != nil {
		t.Fatal(err)
	}
	stall, loading := make(chan struct{}), make(chan struct{})
	j.set(func(j *memJournal) { j.stall, j.loading = stall, loading })
	joined := make(chan error, 1)
	go func() {
		_, err := h.Join(b, "slow", nil)
		joined <- err
	}()
	<-loading
	j.set(func(j *memJournal) { j.stall = nil })
	// bob asks about the room being loaded: these wait for the load, but
	// not while holding up the hub.
	var waiting sync.WaitGroup
	waiting.Go(func() { _ = h.Received(b, "slow", 1) })
	waiting.Go(func() { _, _ = h.Members(b, "slow", "", 0) })
	time.Sleep(10 * time.Millisecond) // let them block
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Sweep()
		if _, err := h.Emit(a, rooms.Target{Room: "fast"}, "chat", nil, rooms.EmitOptions{}); err != nil {
			t.Error(err)
		}
		if _, err := h.Members(a, "fast", "", 0); err != nil {
			t.Error(err)
		}
		c := newDeliveries("c1", "carol")
		h.Register(c)
		h.Unregister(c)
		_ = h.Received(a, "fast", 1)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the hub waited for a journal stalled on another room")
	}
	close(stall)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	waiting.Wait()
}

// A resend of an event after a restart is still recognised by its id once
// the room is loaded: it gets the first ack's position, nothing is
// published again.
func TestJournalDedupAfterRestart(t *testing.T) {
	j := newMemJournal()
	h1 := rooms.New(rooms.Config{Journal: j})
	a := newDeliveries("a1", "alice")
	h1.Register(a)
	if _, err := h1.Join(a, "r", nil); err != nil {
		t.Fatal(err)
	}
	first, err := h1.Emit(a, rooms.Target{Room: "r"}, "chat", nil, rooms.EmitOptions{MsgID: "m-7"})
	if err != nil {
		t.Fatal(err)
	}
	h2 := rooms.New(rooms.Config{Journal: j})
	a2 := newDeliveries("a2", "alice")
	h2.Register(a2)
	if _, err := h2.Join(a2, "r", &protocol.Position{Epoch: first.Epoch, Seq: first.Seq}); err != nil {
		t.Fatal(err)
	}
	again, err := h2.Emit(a2, rooms.Target{Room: "r"}, "chat", nil, rooms.EmitOptions{MsgID: "m-7"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Seq != first.Seq || again.Epoch != first.Epoch {
		t.Fatalf("resend after restart: %+v, want a duplicate of %+v", again, first)
	}
	if n := len(a2.live); n != 0 {
		t.Fatalf("the resend was delivered: %d live frames", n)
	}
	if n := len(j.recs["r"]); n != 1 {
		t.Fatalf("the journal holds %d records, want 1", n)
	}
}

// limitedJournal is a memJournal that stores records up to max bytes.
type limitedJournal struct {
	*memJournal
	max int
}

func (j limitedJournal) MaxRecordBytes() int { return j.max }

var (
	_ rooms.Journal      = (*memJournal)(nil)
	_ rooms.JournalLimit = limitedJournal{}
)

// An event larger than the journal stores is delivered, and journaled as
// a position only; it is not kept in memory either, so a replay has the
// same gap where it was before and after a restart.
func TestJournalLargeEvent(t *testing.T) {
	j := limitedJournal{newMemJournal(), 300}
	h1 := rooms.New(rooms.Config{Journal: j})
	alice := newDeliveries("a1", "alice")
	h1.Register(alice)
	if _, err := h1.Join(alice, "r", nil); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{`"small"`, `"` + strings.Repeat("x", 400) + `"`, `"small again"`} {
		if _, err := h1.Emit(alice, rooms.Target{Room: "r"}, "chat", json.RawMessage(data), rooms.EmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(alice.live); n != 3 {
		t.Fatalf("alice saw %d events live, want 3", n)
	}
	if recs := j.recs["r"]; len(recs) != 3 || recs[1].JSON != nil || recs[2].JSON == nil {
		t.Fatalf("journaled %+v, want the second as a position only", recs)
	}
	epoch := frames(t, alice.live)[0].Epoch
	for _, h := range []*rooms.Hub{h1, rooms.New(rooms.Config{Journal: j})} {
		bob := newDeliveries(fmt.Sprintf("b%p", h), "bob")
		h.Register(bob)
		jn, err := h.Join(bob, "r", &protocol.Position{Epoch: epoch, Seq: 0})
		if err != nil {
			t.Fatal(err)
		}
		got := frames(t, bob.msgs)
		if jn.Recovery != "history" || jn.Seq != 3 || len(got) != 2 || got[0].From != 1 || got[0].To != 2 || got[1].Seq != 3 {
			t.Fatalf("joined %+v, caught up %+v; want the gap 1-2, then 3", jn, got)
		}
	}
}
