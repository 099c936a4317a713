package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// peer is a second hub on the node's NATS server, with its own connection
// and journal, following the stream as a ferry node on a shared NATS does.
func peer(t testing.TB, n *node) *rooms.Hub {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(n.emb.srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	j, err := New(context.Background(), nc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := rooms.New(rooms.Config{Journal: j})
	follow(t, j, h)
	return h
}

func follow(t testing.TB, j *Journal, h *rooms.Hub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = j.Follow(ctx, h.Apply)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// Three hubs share a room through one stream: four senders on different
// hubs emit at once, each event with a msg_id and every tenth one resent
// through another hub (a client that moved after losing the ack). Every
// member, on every hub, gets each event exactly once, in one order (seqs
// 1..N without a hole), which keeps each sender's order; every resend is
// acknowledged as a duplicate with the first one's position.
func TestHubsShareRooms(t *testing.T) {
	n := start(t, t.TempDir(), Config{}, rooms.Config{})
	follow(t, n.j, n.hub)
	hubs := []*rooms.Hub{n.hub, peer(t, n), peer(t, n)}
	const room, senders, each = "shared", 4, 250

	readers := make([]*member, len(hubs))
	for i, h := range hubs {
		readers[i] = &member{conn: fmt.Sprintf("r%d", i), user: fmt.Sprintf("reader%d", i)}
		join(t, h, readers[i], room, nil)
	}
	// Each sender is connected to two hubs, the second for its resends.
	type sender struct {
		m     [2]*member
		hub   [2]*rooms.Hub
		first map[string]protocol.Delivered
	}
	ss := make([]*sender, senders)
	for i := range ss {
		s := &sender{first: make(map[string]protocol.Delivered)}
		for k := range 2 {
			s.m[k] = &member{conn: fmt.Sprintf("s%d-%d", i, k), user: fmt.Sprintf("sender%d", i)}
			s.hub[k] = hubs[(i+k)%len(hubs)]
			join(t, s.hub[k], s.m[k], room, nil)
		}
		ss[i] = s
	}
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				id := fmt.Sprintf("s%d-%d", i, k)
				data := json.RawMessage(fmt.Sprintf(`{"s":%d,"k":%d}`, i, k))
				d, err := s.hub[0].Emit(s.m[0], rooms.Target{Room: room}, "chat", data, rooms.EmitOptions{MsgID: id})
				if err != nil {
					errs <- err
					return
				}
				s.first[id] = d
				if k%10 != 0 {
					continue
				}
				again, err := s.hub[1].Emit(s.m[1], rooms.Target{Room: room}, "chat", data, rooms.EmitOptions{MsgID: id})
				if err != nil {
					errs <- err
					return
				}
				if !again.Duplicate || again.Seq != d.Seq || again.Epoch != d.Epoch {
					errs <- fmt.Errorf("resend of %s through another hub: %+v, first %+v", id, again, d)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	const total = senders * each
	deadline := time.Now().Add(20 * time.Second)
	for i, r := range readers {
		for len(r.got(t)) < total && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		fs := r.got(t)
		if len(fs) != total {
			t.Fatalf("reader on hub %d got %d events, want %d", i, len(fs), total)
		}
		epoch := fs[0].Epoch
		if got := seqs(t, fs, epoch); !equal(got, span(1, total)) {
			t.Fatalf("reader on hub %d: seqs not 1..%d: %v", i, total, got)
		}
		next := make([]int, senders)
		for _, f := range fs {
			var ev struct {
				Data struct{ S, K int } `json:"data"`
			}
			if err := json.Unmarshal([]byte(f.JSON), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Data.K != next[ev.Data.S] {
				t.Fatalf("reader on hub %d: sender %d's event %d came after %d", i, ev.Data.S, ev.Data.K, next[ev.Data.S]-1)
			}
			next[ev.Data.S]++
			d := ss[ev.Data.S].first[fmt.Sprintf("s%d-%d", ev.Data.S, ev.Data.K)]
			if d.Seq != f.Seq || d.Epoch != f.Epoch {
				t.Fatalf("event s%d-%d acked at %d/%s, delivered at %d/%s", ev.Data.S, ev.Data.K, d.Seq, d.Epoch, f.Seq, f.Epoch)
			}
		}
	}
	// A member joining later on any hub replays the same history.
	late := &member{conn: "late", user: "late"}
	j := join(t, hubs[2], late, room, &protocol.Position{Epoch: readers[0].got(t)[0].Epoch, Seq: total - 5})
	if j.Seq != total || j.Replayed != 5 {
		t.Fatalf("late join on hub 2: %+v", j)
	}
}

func TestDecodeRoom(t *testing.T) {
	for _, name := range []string{"a", oddRoom, "x_y", "Ünï"} {
		got, ok := decodeRoom(encodeRoom(name))
		if !ok || got != name {
			t.Errorf("decodeRoom(encodeRoom(%q)) = %q, %v", name, got, ok)
		}
	}
	for _, bad := range []string{"_", "_4", "_zz", "a_4"} {
		if _, ok := decodeRoom(bad); ok {
			t.Errorf("decodeRoom(%q) accepted", bad)
		}
	}
}

// A room nobody wrote to yet has one epoch on every hub: members joining
// on different hubs are told the same one, and the room's first event,
// sent through any hub, comes in it. A hub that loads the room later (a
// restart) answers in it too.
func TestEmptyRoomHasOneEpoch(t *testing.T) {
	n := start(t, t.TempDir(), Config{}, rooms.Config{})
	follow(t, n.j, n.hub)
	hubs := []*rooms.Hub{n.hub, peer(t, n), peer(t, n)}
	members := make([]*member, len(hubs))
	joined := make([]protocol.Joined, len(hubs))
	var wg sync.WaitGroup
	for i, h := range hubs {
		members[i] = &member{conn: fmt.Sprintf("c%d", i), user: fmt.Sprintf("u%d", i)}
		wg.Add(1)
		go func() { defer wg.Done(); joined[i] = join(t, h, members[i], "new", nil) }()
	}
	wg.Wait()
	for i, j := range joined {
		if j.Epoch != joined[0].Epoch || j.Seq != 0 {
			t.Fatalf("hub %d answered the join at %s/%d, hub 0 at %s/0", i, j.Epoch, j.Seq, joined[0].Epoch)
		}
	}
	d := emit(t, hubs[2], members[2], "new", 1)
	if d.Epoch != joined[0].Epoch || d.Seq != 1 {
		t.Fatalf("the first event went to %s/%d, want %s/1", d.Epoch, d.Seq, joined[0].Epoch)
	}
	for i, m := range members {
		deadline := time.Now().Add(5 * time.Second)
		for len(m.got(t)) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := m.got(t); len(got) != 1 || got[0].T != protocol.TypeEvent || got[0].Epoch != d.Epoch || got[0].Seq != 1 {
			t.Fatalf("member on hub %d got %+v, want the event at %s/1", i, got, d.Epoch)
		}
	}
	// A fourth hub, as a node started later, loads the room at its start.
	late := &member{conn: "late", user: "late"}
	if j := join(t, peer(t, n), late, "new", &protocol.Position{Epoch: d.Epoch, Seq: 0}); j.Epoch != d.Epoch || j.Seq != 1 || j.Recovery != "ok" {
		t.Fatalf("a later hub answered %+v, want recovery ok at %s/1", j, d.Epoch)
	}
	// And a room that only started (no event yet) too.
	first := &member{conn: "f", user: "f"}
	started := join(t, hubs[0], first, "quiet", nil)
	if j := join(t, peer(t, n), &member{conn: "g", user: "g"}, "quiet", &protocol.Position{Epoch: started.Epoch}); j.Epoch != started.Epoch || j.Recovery != "ok" {
		t.Fatalf("a later hub answered %+v in a started room, want recovery ok at %s/0", j, started.Epoch)
	}
}

// flaky is the journal as a NATS cluster electing a leader serves it: the
// appends it is told to fail are answered with an error, stored or not.
type flaky struct {
	*Journal
	mu   sync.Mutex
	fail []bool        // per append to come: true stores it first, false does not
	slow time.Duration // how long a failing append takes to fail
}

func (f *flaky) AppendAfter(ctx context.Context, room string, rec rooms.Record, after uint64) (uint64, error) {
	f.mu.Lock()
	var next []bool
	if len(f.fail) > 0 {
		next, f.fail = f.fail[:1], f.fail[1:]
	}
	f.mu.Unlock()
	if len(next) == 0 {
		return f.Journal.AppendAfter(ctx, room, rec, after)
	}
	if next[0] {
		if _, err := f.Journal.AppendAfter(ctx, room, rec, after); err != nil {
			return 0, err
		}
	}
	f.mu.Lock()
	slow := f.slow
	f.mu.Unlock()
	time.Sleep(slow)
	return 0, context.DeadlineExceeded
}

// An append whose outcome is unknown (stored but unanswered, or not
// stored) is made again and the event is stored once, at its position, in
// the room's epoch: the epoch ends only when history is lost. Another hub
// on the stream gets each event once, and a join replays them.
func TestUnknownAppendKeepsEpoch(t *testing.T) {
	n := start(t, t.TempDir(), Config{}, rooms.Config{})
	fl := &flaky{Journal: n.j}
	h := rooms.New(rooms.Config{Journal: fl, JournalTimeout: time.Second})
	follow(t, n.j, h)
	other := peer(t, n)
	alice := &member{conn: "a", user: "alice"}
	joined := join(t, h, alice, "r", nil)
	bob := &member{conn: "b", user: "bob"}
	join(t, other, bob, "r", nil)

	fl.mu.Lock()
	// Event 1 stored but unanswered twice in a row; event 2 not stored,
	// then stored unanswered; event 3 as usual; event 4 stored, its
	// failure slow.
	fl.fail = []bool{true, true}
	fl.mu.Unlock()
	for i := 1; i <= 4; i++ {
		fl.mu.Lock()
		switch i {
		case 2:
			fl.fail = []bool{false, true}
		case 4:
			// Stored, answered only after the journal's timeout: the
			// retry's refusal comes past it, and is still the record's own.
			fl.fail, fl.slow = []bool{true}, 1100*time.Millisecond
		}
		fl.mu.Unlock()
		d, err := h.Emit(alice, rooms.Target{Room: "r"}, "chat", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), rooms.EmitOptions{MsgID: fmt.Sprintf("m%d", i)})
		if err != nil || d.Epoch != joined.Epoch || d.Seq != uint64(i) || d.Duplicate {
			t.Fatalf("emit %d: %+v, %v; want seq %d of epoch %s, not a duplicate", i, d, err, i, joined.Epoch)
		}
	}
	for _, m := range []*member{alice, bob} {
		deadline := time.Now().Add(5 * time.Second)
		for len(m.got(t)) < 4 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		got := m.got(t)
		if len(got) != 4 {
			t.Fatalf("%s got %+v, want 4 events", m.user, got)
		}
		for i, f := range got {
			if f.T != protocol.TypeEvent || f.Epoch != joined.Epoch || f.Seq != uint64(i+1) {
				t.Fatalf("%s's frame %d: %+v", m.user, i, f)
			}
		}
	}
	recs, err := n.j.Load(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != "[0 1 2 3 4]" {
		t.Fatalf("the stream holds seqs %v, want the start and 1 to 4 once each", seqs)
	}
}
