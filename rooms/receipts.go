package rooms

import (
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
}

func newTracker(perUser, max int) tracker {
	return tracker{events: make(map[trackKey]*tracking), bound: newFairBound[trackKey](perUser, max)}
}

// add tracks an event until the given time: as long as it can still be
// delivered (from the history, or from a mailbox).
func (t *tracker) add(k trackKey, from protocol.From, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, old := range t.bound.add(from.User, k) {
		delete(t.events, old)
	}
	t.events[k] = &tracking{from: from, until: until, users: make(map[string]protocol.ReceiptUser)}
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
	if strings.HasPrefix(room, UserPrefix) || strings.HasPrefix(room, ConnPrefix) {
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
	now := h.cfg.Now()
	k := h.trackKey(room, seq)
	h.track.mu.Lock()
	e := h.track.events[k]
	if e == nil {
		h.track.mu.Unlock()
		return nil
	}
	if _, dup := e.users[m.UserID()]; dup || m.UserID() == e.from.User {
		h.track.mu.Unlock()
		return nil
	}
	e.users[m.UserID()] = protocol.ReceiptUser{User: m.UserID(), Name: m.UserName(), At: now.UnixMilli()}
	count, from := len(e.users), e.from
	h.track.mu.Unlock()

	b, _ := json.Marshal(protocol.Receipt{T: protocol.TypeReceipt, Room: room, Seq: seq,
		User: m.UserID(), Name: m.UserName(), Conn: m.ConnID(), Count: count})
	msg := NewMessage(b, m.ConnID())
	h.mu.RLock()
	defer h.mu.RUnlock()
	// The sending connection if it is still there, else every connection
	// of the sending user.
	if st := h.members[from.Conn]; st != nil {
		st.m.Deliver(msg)
		return nil
	}
	for _, st := range h.users[from.User] {
		st.m.Deliver(msg)
	}
	return nil
}

// Receipts lists the users that confirmed an event, for its sender or a
// member of its room.
func (h *Hub) Receipts(m Member, room string, seq uint64) (protocol.Receipts, error) {
	k := h.trackKey(room, seq)
	h.track.mu.Lock()
	e := h.track.events[k]
	var out protocol.Receipts
	var sender string
	if e != nil {
		sender = e.from.User
		out = protocol.Receipts{Room: room, Seq: seq, Count: len(e.users), Users: make([]protocol.ReceiptUser, 0, len(e.users))}
		for _, u := range e.users {
			out.Users = append(out.Users, u)
		}
	}
	h.track.mu.Unlock()
	if e == nil {
		return protocol.Receipts{}, protocol.Errorf(protocol.CodeUnknownTarget, "no receipts are tracked for %s seq %d", room, seq)
	}
	if sender != m.UserID() {
		if err := h.mayRead(m, room); err != nil {
			return protocol.Receipts{}, err
		}
	}
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
