package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// rosterNode is a hub on a shared NATS with its journal and roster, as
// a ferry node started with --nats runs them.
type rosterNode struct {
	hub    *rooms.Hub
	roster *Roster
	nc     *nats.Conn
	stop   func()
}

const testHeartbeat = 200 * time.Millisecond

func startRosterNode(t *testing.T, emb *Embedded, hcfg rooms.Config) *rosterNode {
	return startRosterNodeBeat(t, emb, hcfg, testHeartbeat)
}

func startRosterNodeBeat(t *testing.T, emb *Embedded, hcfg rooms.Config, beat time.Duration) *rosterNode {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(emb.srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	j, err := New(context.Background(), nc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRoster(context.Background(), nc, RosterConfig{Heartbeat: beat})
	if err != nil {
		t.Fatal(err)
	}
	hcfg.Journal, hcfg.Roster = j, r
	n := &rosterNode{hub: rooms.New(hcfg), roster: r, nc: nc}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.hub.Run(ctx) })
	wg.Go(func() { _ = j.Follow(ctx, n.hub.Apply) })
	wg.Go(func() { _ = r.Run(ctx, n.hub) })
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(n.stop)
	return n
}

// presences returns the presence frames m got.
func (m *member) presences() []protocol.Presence {
	return framesOf[protocol.Presence](m, protocol.TypePresence)
}

// framesOf decodes the frames of type typ that m got.
func framesOf[T any](m *member, typ string) []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []T
	for _, s := range m.frames {
		var head struct {
			T string `json:"t"`
		}
		if json.Unmarshal([]byte(s), &head) != nil || head.T != typ {
			continue
		}
		var f T
		_ = json.Unmarshal([]byte(s), &f)
		out = append(out, f)
	}
	return out
}

// eventually polls ok for up to d.
func eventually(t *testing.T, d time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		good, got := ok()
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s: %s", d, what, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allMembers walks h's members pages of room as m.
func allMembers(t *testing.T, h *rooms.Hub, m rooms.Member, room string) (users []string, count, conns int) {
	t.Helper()
	for after := ""; ; {
		page, err := h.Members(m, room, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Members {
			users = append(users, u.User)
		}
		count, conns = page.Count, page.Connections
		if page.Next == "" {
			return users, count, conns
		}
		after = page.Next
	}
}

// Three hubs on one NATS share presence through the bucket: the members
// of a small room see the others' arrivals and departures one by one; past
// PresenceLimit they get counts with everyone's numbers; each hub's pages
// list every user with exact numbers; a hub that dies without a word
// (its NATS connection cut, its keys left behind) leaves the others'
// rooms once its heartbeat is overdue, and its keys are purged.
func TestRosterSharesPresence(t *testing.T) {
	emb, err := StartEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	hcfg := rooms.Config{PresenceLimit: 5, PresenceInterval: 50 * time.Millisecond}
	nodes := []*rosterNode{startRosterNode(t, emb, hcfg), startRosterNode(t, emb, hcfg), startRosterNode(t, emb, hcfg)}
	const room = "lobby"

	readers := make([]*member, len(nodes))
	for i, n := range nodes {
		readers[i] = &member{conn: fmt.Sprintf("r%d", i), user: fmt.Sprintf("reader%d", i)}
		join(t, n.hub, readers[i], room, nil)
	}
	numbers := func(i, users, conns int) func() (bool, string) {
		return func() (bool, string) {
			got, c, cs := allMembers(t, nodes[i].hub, readers[i], room)
			return c == users && cs == conns && len(got) == users, fmt.Sprintf("hub %d lists %v, count %d, connections %d", i, got, c, cs)
		}
	}
	for i := range nodes {
		eventually(t, 5*time.Second, "three readers everywhere", numbers(i, 3, 3))
	}
	// x arrives on hub 0 with two connections, then leaves: the readers on
	// hubs 1 and 2 see it one by one (the room has at most 5 users).
	x1, x2 := &member{conn: "x1", user: "x"}, &member{conn: "x2", user: "x"}
	join(t, nodes[0].hub, x1, room, nil)
	join(t, nodes[0].hub, x2, room, nil)
	for i := 1; i < 3; i++ {
		eventually(t, 5*time.Second, "x's arrival", func() (bool, string) {
			ps := readers[i].presences()
			n := len(ps)
			return n > 0 && ps[n-1].User == "x" && ps[n-1].Action == protocol.PresenceJoin && ps[n-1].Connections == 2,
				fmt.Sprintf("reader on hub %d got %+v", i, ps)
		})
		eventually(t, 5*time.Second, "x on every hub", numbers(i, 4, 5))
	}
	nodes[0].hub.Unregister(x1)
	nodes[0].hub.Unregister(x2)
	for i := 1; i < 3; i++ {
		eventually(t, 5*time.Second, "x's departure", func() (bool, string) {
			ps := readers[i].presences()
			n := len(ps)
			return n > 0 && ps[n-1].User == "x" && ps[n-1].Action == protocol.PresenceLeave && ps[n-1].Connections == 0,
				fmt.Sprintf("reader on hub %d got %+v", i, ps)
		})
	}

	// Six more users over the three hubs: 9 in all, past the limit.
	for k := range 6 {
		join(t, nodes[k%3].hub, &member{conn: fmt.Sprintf("u%d", k), user: fmt.Sprintf("user%d", k)}, room, nil)
	}
	for i := range nodes {
		eventually(t, 5*time.Second, "nine users everywhere", numbers(i, 9, 9))
		eventually(t, 5*time.Second, "a count of nine", func() (bool, string) {
			ps := readers[i].presences()
			n := len(ps)
			return n > 0 && ps[n-1].Action == protocol.PresenceCount && ps[n-1].Users == 9 && ps[n-1].Connections == 9,
				fmt.Sprintf("reader on hub %d got %+v", i, ps[max(0, n-3):])
		})
	}
	users, _, _ := allMembers(t, nodes[1].hub, readers[1], room)
	if want := "[reader0 reader1 reader2 user0 user1 user2 user3 user4 user5]"; fmt.Sprint(users) != want {
		t.Fatalf("hub 1 lists %v, want %s", users, want)
	}

	// Hub 2 dies: its connection cut first, so that it purges nothing.
	dead := nodes[2].roster.Node()
	nodes[2].nc.Close()
	nodes[2].stop()
	start := time.Now()
	for i := range 2 {
		eventually(t, 10*time.Second, "hub 2's users gone", numbers(i, 6, 6))
	}
	took := time.Since(start)
	if timeout := 3 * testHeartbeat; took < timeout/2 {
		t.Fatalf("hub 2's users left after %v, before its heartbeat was overdue (%v)", took, timeout)
	}
	t.Logf("a dead hub's users left the others' rooms after %v", took)
	eventually(t, 10*time.Second, "hub 2's keys purged", func() (bool, string) {
		keys, err := nodes[0].roster.kv.ListKeysFiltered(context.Background(), "*."+dead+".>", "n."+dead)
		if err != nil {
			return false, err.Error()
		}
		var left []string
		for k := range keys.Keys() {
			left = append(left, k)
		}
		sort.Strings(left)
		return len(left) == 0, fmt.Sprint(left)
	})
}

// twoRosterNodes starts nodes a, with user r, and b, with user s, in room
// lobby, and waits until a counts both; count(n) checks a's count.
func twoRosterNodes(t *testing.T, beat time.Duration) (a, b *rosterNode, count func(int) func() (bool, string)) {
	t.Helper()
	emb, err := StartEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	a = startRosterNodeBeat(t, emb, rooms.Config{}, beat)
	b = startRosterNodeBeat(t, emb, rooms.Config{}, beat)
	r := &member{conn: "r", user: "r"}
	join(t, a.hub, r, "lobby", nil)
	join(t, b.hub, &member{conn: "s", user: "s"}, "lobby", nil)
	count = func(want int) func() (bool, string) {
		return func() (bool, string) {
			_, c, _ := allMembers(t, a.hub, r, "lobby")
			return c == want, fmt.Sprintf("count %d", c)
		}
	}
	eventually(t, 5*time.Second, "s on hub a", count(2))
	return a, b, count
}

// A node stopping in order purges its keys: its users leave the others'
// rooms at once, not after the heartbeat timeout.
func TestRosterLeavesOnStop(t *testing.T) {
	const beat = time.Second
	_, b, count := twoRosterNodes(t, beat)
	b.stop()
	// Well before the timeout: the purge, not the heartbeat, said so.
	eventually(t, beat, "s gone from hub a", count(1))
}

func TestEntryKey(t *testing.T) {
	k := entryKey("node1", "a room:@.-_", "user with spaces/and.dots")
	kind, node, ok := parseKey(k)
	if !ok || kind != "p" || node != "node1" {
		t.Fatalf("parseKey(%q) = %q %q %v", k, kind, node, ok)
	}
	if entryKey("node1", "a", "bc") == entryKey("node1", "ab", "c") {
		t.Fatal("room and user run together in the key")
	}
	for _, bad := range []string{"", "n", "n.", "p.x", "p..h", "q.x.y", "p.x.y.z"} {
		if _, _, ok := parseKey(bad); ok {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
}

// A node another took for dead (its keys purged while it was only cut
// off) writes its keys again when it sees its heartbeat purged, and the
// others count its users again.
func TestRosterRewritesPurgedKeys(t *testing.T) {
	a, b, count := twoRosterNodes(t, testHeartbeat)
	ownKeys := func() []string {
		keys, err := b.roster.ownKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	keys := ownKeys()
	if len(keys) != 1 {
		t.Fatalf("node b has keys %v, want one", keys)
	}
	// What the live node with the smallest name does to a gone one.
	ctx := context.Background()
	if err := a.roster.purge(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "s gone from hub a", count(1))
	if err := a.roster.purge(ctx, "n."+b.roster.Node()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "s back on hub a", count(2))
	if keys := ownKeys(); len(keys) != 1 {
		t.Fatalf("node b has keys %v after writing them again, want one", keys)
	}
}

// With NATS out of reach, Set still returns at once; a flush fails after
// its first write and keeps every figure pending; past MaxPending the
// roster gives them up for one rewrite of all its keys.
func TestRosterKeepsFiguresWhileNATSIsAway(t *testing.T) {
	emb, err := StartEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	nc, err := nats.Connect("", nats.InProcessServer(emb.srv))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRoster(context.Background(), nc, RosterConfig{MaxPending: 50})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	start := time.Now()
	for i := range 40 {
		r.Set("lobby", fmt.Sprintf("u%d", i), "u", 1)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("40 Sets took %v with NATS away", d)
	}
	start = time.Now()
	if err := r.flush(context.Background()); err == nil {
		t.Fatal("flush with NATS away succeeded")
	}
	if d := time.Since(start); d > writeTimeout {
		t.Fatalf("the failing flush took %v", d)
	}
	r.mu.Lock()
	pending, resync := len(r.pending), r.resync
	r.mu.Unlock()
	if pending != 40 || resync {
		t.Fatalf("%d figures pending (resync %v) after the failed flush, want 40", pending, resync)
	}
	for i := 40; i < 60; i++ {
		r.Set("lobby", fmt.Sprintf("u%d", i), "u", 1)
	}
	r.mu.Lock()
	pending, resync = len(r.pending), r.resync
	local := len(r.local)
	r.mu.Unlock()
	if !resync || pending > 50 || local != 60 {
		t.Fatalf("past MaxPending: %d pending, resync %v, %d local; want a resync of all 60", pending, resync, local)
	}
}
