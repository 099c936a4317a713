package rooms

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// tracker follows the events whose sender asked for receipts: who sent them
// and which users confirmed them.
type tracker struct {
	mu     sync.Mutex
	events map[trackKey]*tracking
	bound  fairBound[trackKey] // by sending user
}

// trackKey names an event: a room's seq starts again with a new epoch.
type trackKey struct {
	room, epoch string
	seq         uint64
}

type tracking struct {
	from  protocol.From
	until time.Time // forgotten after this
	users map[string]protocol.ReceiptUser
	// loaded: users holds every confirmation the ReceiptLog has (an event
	// this hub published, or one whose confirmations it read); otherwise
	// the log is read at the first use.
	loaded bool
}

func newTracker(perUser, max int) tracker {
	return tracker{events: make(map[trackKey]*tracking), bound: newFairBound[trackKey](perUser, max)}
}

// add tracks an event until the given time: as long as it can still be
// delivered (from the history, or from a mailbox).
func (t *tracker) add(k trackKey, from protocol.From, until time.Time, loaded bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.events[k] != nil {
		return // restored twice (a load, then the feed): the first stays
	}
	for _, old := range t.bound.add(from.User, k) {
		delete(t.events, old)
	}
	t.events[k] = &tracking{from: from, until: until, users: make(map[string]protocol.ReceiptUser), loaded: loaded}
}

func (t *tracker) expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.events {
		if e.until.Before(now) {
			delete(t.events, k)
			t.bound.remove(k)
		}
	}
	t.bound.compact()
}

// trackKey returns the key of event seq of room in the room's current epoch.
func (h *Hub) trackKey(room string, seq uint64) trackKey {
	if builtIn(room) {
		return trackKey{room, h.epoch, seq}
	}
	h.mu.RLock()
	r := h.rooms[room]
	if r == nil {
		h.mu.RUnlock()
		return trackKey{room: room, seq: seq}
	}
	// The room's lock may wait for the journal: not under the hub's.
	r.pins.Add(1)
	h.mu.RUnlock()
	defer r.pins.Add(-1)
	epoch, _ := r.position()
	return trackKey{room, epoch, seq}
}

// Received records that m received the event seq of room (a named room m
// is in, or m's own user or connection room) and tells the sender when this
// is a user it had not heard from. Unknown or untracked events are ignored:
// receipts are best effort for events older than the history.
func (h *Hub) Received(m Member, room string, seq uint64) error {
	if err := h.mayRead(m, room); err != nil {
		return err
	}
	k := h.trackKey(room, seq)
	h.loadConfirmed(k)
	u := protocol.ReceiptUser{User: m.UserID(), Name: m.UserName(), At: h.cfg.Now().UnixMilli()}
	if !h.confirmed(k, u, m.ConnID()) || h.cfg.Receipts == nil || builtIn(room) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	if err := h.cfg.Receipts.Confirm(ctx, k.room, k.epoch, k.seq, u, m.ConnID()); err != nil {
		// Its sender has it from this node; other nodes and a restart
		// will not.
		h.cfg.Log.Warn("receipts: store", "room", room, "seq", seq, "err", err)
	}
	return nil
}

// confirmed records that u received the tracked event k and, when u is
// new to it, tells the sender: its connection if it is on this hub, else
// the sending user's connections here. conn is the confirming connection.
// It reports whether u was new.
func (h *Hub) confirmed(k trackKey, u protocol.ReceiptUser, conn string) bool {
	h.track.mu.Lock()
	e := h.track.events[k]
	if e == nil {
		h.track.mu.Unlock()
		return false
	}
	if _, dup := e.users[u.User]; dup || u.User == e.from.User {
		h.track.mu.Unlock()
		return false
	}
	e.users[u.User] = u
	count, from := len(e.users), e.from
	h.track.mu.Unlock()

	h.mu.RLock()
	defer h.mu.RUnlock()
	var to []*memberState
	if st := h.members[from.Conn]; st != nil {
		to = []*memberState{st}
	} else {
		for _, st := range h.users[from.User] {
			to = append(to, st)
		}
	}
	if len(to) == 0 {
		return true // the sender has no connection here (another node's)
	}
	b, _ := json.Marshal(protocol.Receipt{T: protocol.TypeReceipt, Room: k.room, Seq: k.seq,
		User: u.User, Name: u.Name, Conn: conn, Count: count})
	msg := NewMessage(b, conn)
	for _, st := range to {
		st.m.Deliver(msg)
	}
	return true
}

// Receipts lists the users that confirmed an event, for its sender or a
// member of its room.
func (h *Hub) Receipts(m Member, room string, seq uint64) (protocol.Receipts, error) {
	k := h.trackKey(room, seq)
	h.track.mu.Lock()
	e := h.track.events[k]
	h.track.mu.Unlock()
	if e == nil {
		return protocol.Receipts{}, protocol.Errorf(protocol.CodeUnknownTarget, "no receipts are tracked for %s seq %d", room, seq)
	}
	if e.from.User != m.UserID() { // from never changes
		if err := h.mayRead(m, room); err != nil {
			return protocol.Receipts{}, err
		}
	}
	// Allowed: now the log may be read.
	h.loadConfirmed(k)
	h.track.mu.Lock()
	out := protocol.Receipts{Room: room, Seq: seq, Count: len(e.users), Users: make([]protocol.ReceiptUser, 0, len(e.users))}
	for _, u := range e.users {
		out.Users = append(out.Users, u)
	}
	h.track.mu.Unlock()
	sort.Slice(out.Users, func(i, j int) bool { return out.Users[i].At < out.Users[j].At })
	return out, nil
}

// mayRead checks that m receives the events of room.
func (h *Hub) mayRead(m Member, room string) error {
	switch {
	case strings.HasPrefix(room, UserPrefix):
		if room[len(UserPrefix):] == m.UserID() {
			return nil
		}
	case strings.HasPrefix(room, ConnPrefix):
		if room[len(ConnPrefix):] == m.ConnID() {
			return nil
		}
	default:
		h.mu.RLock()
		st := h.members[m.ConnID()]
		in := st != nil && st.rooms[room] != nil
		h.mu.RUnlock()
		if in {
			return nil
		}
	}
	return protocol.Errorf(protocol.CodeNotMember, "you do not receive the events of %q", room)
}
