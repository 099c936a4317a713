package rooms_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// presences returns the presence frames d got.
func (d *syncDeliveries) presences() []protocol.Presence {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []protocol.Presence
	for _, m := range d.live {
		if strings.Contains(m, `"t":"presence"`) {
			var p protocol.Presence
			_ = json.Unmarshal([]byte(m), &p)
			out = append(out, p)
		}
	}
	return out
}

// A room announces joins one by one up to PresenceLimit users; past it a
// join costs no frame to the others, and the members get one count, with
// the exact numbers, per PresenceInterval.
func TestPresenceInLargeRooms(t *testing.T) {
	h := rooms.New(rooms.Config{PresenceLimit: 3, PresenceInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var ms []*syncDeliveries
	for i := range 10 {
		m := &syncDeliveries{deliveries: newDeliveries(fmt.Sprintf("c%d", i), fmt.Sprintf("u%02d", i))}
		h.Register(m)
		if _, err := h.Join(m, "big", nil); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	// The first member saw the joins of users 2 and 3 one by one (the room
	// had at most 3 users then), none of the 7 after.
	joins := 0
	for _, p := range ms[0].presences() {
		if p.Action == protocol.PresenceJoin {
			joins++
		}
	}
	if joins != 2 {
		t.Fatalf("the first member saw %d joins, want 2", joins)
	}
	// Then one count with the exact numbers, however many joined.
	waitFor(t, "a count", func() bool { return len(countsOf(ms[9])) > 0 })
	time.Sleep(100 * time.Millisecond) // a few more intervals: nothing changed, nothing sent
	for i, m := range ms {
		c := countsOf(m)
		if len(c) != 1 || c[0].Users != 10 || c[0].Connections != 10 {
			t.Fatalf("member %d got counts %+v, want one of 10 users, 10 connections", i, c)
		}
	}
	// Leaves too: one more count, exact.
	for _, m := range ms[5:] {
		h.Unregister(m)
	}
	waitFor(t, "the second count", func() bool { return len(countsOf(ms[0])) == 2 })
	if c := countsOf(ms[0])[1]; c.Users != 5 || c.Connections != 5 {
		t.Fatalf("count after leaves %+v, want 5 and 5", c)
	}
}

func countsOf(d *syncDeliveries) []protocol.Presence {
	var out []protocol.Presence
	for _, p := range d.presences() {
		if p.Action == protocol.PresenceCount {
			out = append(out, p)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Members listings come in pages by user id that together list every user
// once, with the room's exact numbers on each; a join's answer is the first
// page.
func TestMembersPages(t *testing.T) {
	h := rooms.New(rooms.Config{})
	const users = 250
	var last *syncDeliveries
	for i := range users {
		// Two connections for every tenth user.
		for k := range 1 + btoi(i%10 == 0) {
			m := &syncDeliveries{deliveries: newDeliveries(fmt.Sprintf("c%d-%d", i, k), fmt.Sprintf("u%03d", (i*7)%users))}
			h.Register(m)
			j, err := h.Join(m, "big", nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(j.Members) > protocol.DefaultMembersPage {
				t.Fatalf("a join answered %d members", len(j.Members))
			}
			last = m
		}
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := h.Members(last, "big", after, 60)
		if err != nil {
			t.Fatal(err)
		}
		if p.Count != users || p.Connections != users+users/10 {
			t.Fatalf("page %d: count %d, connections %d", pages, p.Count, p.Connections)
		}
		for _, m := range p.Members {
			got = append(got, m.User)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(got) != users {
		t.Fatalf("pages listed %d users, want %d", len(got), users)
	}
	for i, u := range got {
		if want := fmt.Sprintf("u%03d", i); u != want {
			t.Fatalf("user %d is %s, want %s", i, u, want)
		}
	}
	if p, _ := h.Members(last, "big", "", 5000); len(p.Members) != protocol.MaxMembersPage && len(p.Members) != users {
		t.Fatalf("a page asked for 5000 has %d members", len(p.Members))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
