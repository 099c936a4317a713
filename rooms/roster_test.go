package rooms_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// link is a Roster handing a hub's figures straight to other hubs, as a
// roster over NATS does a few milliseconds later.
type link struct {
	node string
	to   []*rooms.Hub
}

var _ rooms.Roster = (*link)(nil)

func (l *link) Set(room, user, name string, conns int) {
	for _, h := range l.to {
		h.ApplyPresence(l.node, room, user, name, conns)
	}
}

// linkedHubs returns n hubs whose presence is shared, running.
func linkedHubs(t *testing.T, n int, cfg rooms.Config) []*rooms.Hub {
	t.Helper()
	links := make([]*link, n)
	hubs := make([]*rooms.Hub, n)
	for i := range hubs {
		links[i] = &link{node: fmt.Sprintf("node%d", i)}
		c := cfg
		c.Roster = links[i]
		hubs[i] = rooms.New(c)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = hubs[i].Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	for i, l := range links {
		for j, h := range hubs {
			if i != j {
				l.to = append(l.to, h)
			}
		}
	}
	return hubs
}

func joinHub(t *testing.T, h *rooms.Hub, conn, user, room string) (*syncDeliveries, protocol.Joined) {
	t.Helper()
	m := &syncDeliveries{deliveries: newDeliveries(conn, user)}
	h.Register(m)
	j, err := h.Join(m, room, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, j
}

// Two hubs sharing presence: each join's answer, members listing and
// presence frame counts the users on both; a user on both is one user
// with its connections summed; a room nobody on a hub is in still knows
// who is in it elsewhere.
func TestPresenceAcrossHubs(t *testing.T) {
	hubs := linkedHubs(t, 2, rooms.Config{PresenceLimit: 3, PresenceInterval: 20 * time.Millisecond})
	a, b := hubs[0], hubs[1]

	a1, _ := joinHub(t, a, "a1", "ua", "lobby")
	b1, j := joinHub(t, b, "b1", "ub", "lobby")
	if j.Count != 2 || j.Connections != 2 || len(j.Members) != 2 || j.Members[0].User != "ua" {
		t.Fatalf("join on B: %+v, want ua and ub", j)
	}
	// ub's arrival on B is announced on A, without a connection id.
	if p := a1.presences(); len(p) != 1 || p[0].Action != protocol.PresenceJoin || p[0].User != "ub" ||
		p[0].Connections != 1 || p[0].Conn != "" {
		t.Fatalf("A's member got %+v, want ub's join", p)
	}
	// ua's second connection, on B: one user, two connections.
	a2, j := joinHub(t, b, "a2", "ua", "lobby")
	if j.Count != 2 || j.Connections != 3 || j.Members[0].Connections != 2 {
		t.Fatalf("ua's second join: %+v, want 2 users, 3 connections, ua with 2", j)
	}
	if p := b1.presences(); len(p) != 1 || p[0].User != "ua" || p[0].Connections != 2 {
		t.Fatalf("B's member got %+v, want ua's join with 2 connections", p)
	}
	if p := a1.presences(); len(p) != 2 || p[1].User != "ua" || p[1].Connections != 2 {
		t.Fatalf("A's member got %+v, want ua's join on B with 2 connections", p)
	}
	m, err := a.Members(a1, "lobby", "", 0)
	if err != nil || m.Count != 2 || m.Connections != 3 {
		t.Fatalf("members on A: %+v %v", m, err)
	}
	// ua leaves B: still in the room, on A.
	b.Unregister(a2)
	if p := b1.presences(); p[len(p)-1].Action != protocol.PresenceLeave || p[len(p)-1].Connections != 1 {
		t.Fatalf("B's member got %+v, want ua's leave with 1 connection left", p)
	}
	if m, _ := b.Members(b1, "lobby", "", 0); m.Count != 2 || m.Connections != 2 || m.Members[0].Connections != 1 {
		t.Fatalf("members on B after ua left it: %+v", m)
	}

	// A room nobody on A is in: A still knows who is in it on B.
	joinHub(t, b, "b2", "ub", "quiet")
	if _, j := joinHub(t, a, "a3", "uc", "quiet"); j.Count != 2 || j.Connections != 2 {
		t.Fatalf("join on A of a room with a member on B: %+v", j)
	}

	// Past PresenceLimit (3 users in all), counts with both hubs' numbers.
	for i := range 4 {
		joinHub(t, hubs[i%2], fmt.Sprintf("x%d", i), fmt.Sprintf("ux%d", i), "lobby")
	}
	for _, mem := range []*syncDeliveries{a1, b1} {
		waitFor(t, "a count of 6 users", func() bool {
			c := countsOf(mem)
			return len(c) > 0 && c[len(c)-1].Users == 6 && c[len(c)-1].Connections == 6
		})
	}
	// Pages walk the users of both hubs.
	var seen []string
	for after := ""; ; {
		page, err := b.Members(b1, "lobby", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Members {
			seen = append(seen, u.User)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if fmt.Sprint(seen) != "[ua ub ux0 ux1 ux2 ux3]" {
		t.Fatalf("pages listed %v", seen)
	}
}

// Another node's figures are bounded: past RemotePresencePerRoom in a
// room, or RemotePresence in all, new ones are ignored; invalid ones too.
func TestRemotePresenceBounds(t *testing.T) {
	h := rooms.New(rooms.Config{RemotePresence: 5, RemotePresencePerRoom: 3})
	m, _ := joinHub(t, h, "c1", "u1", "r1")
	for i := range 10 {
		h.ApplyPresence("evil", "r1", fmt.Sprintf("e%d", i), "e", 1)
	}
	h.ApplyPresence("evil", "r1", "bad", "e", -1)
	h.ApplyPresence("evil", "r1", "", "e", 1)
	h.ApplyPresence("evil", "conn:x", "e", "e", 1)
	h.ApplyPresence("", "r1", "e", "e", 1)
	if got, _ := h.Members(m, "r1", "", 0); got.Count != 4 || got.Connections != 4 {
		t.Fatalf("room r1 after a flood: %+v, want 1 local and 3 remote", got)
	}
	for i := range 10 {
		h.ApplyPresence("evil", fmt.Sprintf("room%d", i), "e", "e", 1)
	}
	if got := h.Stats().Rooms; got != 3 {
		t.Fatalf("%d rooms after a flood, want r1 and 2 more (5 figures in all)", got)
	}
	// Figures gone free their room.
	for i := range 10 {
		h.ApplyPresence("evil", fmt.Sprintf("room%d", i), "e", "e", 0)
	}
	if got := h.Stats().Rooms; got != 1 {
		t.Fatalf("%d rooms once the figures are gone, want 1", got)
	}
}
