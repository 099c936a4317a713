package rooms

import (
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// room is a named room. Its lock is held while delivering, so every member
// sees a room's messages in the same order; Deliver never blocks, so holding
// it is short.
type room struct {
	name string

	// pins counts the hub's operations that found the room under the hub's
	// lock and act on it after: a pinned room is not idle, so that the
	// sweep or a last leave does not end it in between.
	pins atomic.Int32

	mu      sync.Mutex
	members []Member          // dense, for a fast fan-out loop
	index   map[string]int    // connection id → position in members
	users   map[string]*count // user id → connections in this room
	st      stream
}

type count struct {
	name string
	n    int
}

func newRoom(name string, now time.Time, acct *histAccount) *room {
	return &room{name: name, index: make(map[string]int), users: make(map[string]*count), st: newStream(now, acct)}
}

// add puts m in the room and tells the others with the message presence
// builds. With since, m first receives what it missed after that position,
// under the room's lock, so nothing published meanwhile comes before it.
func (r *room) add(m Member, presence func(int) *Message, since *protocol.Position) (recovery string, replayed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if since != nil {
		recovery, replayed = r.replayLocked(m, since)
	}
	if _, ok := r.index[m.ConnID()]; ok {
		return recovery, replayed
	}
	r.index[m.ConnID()] = len(r.members)
	r.members = append(r.members, m)
	c := r.users[m.UserID()]
	if c == nil {
		c = &count{name: m.UserName()}
		r.users[m.UserID()] = c
	}
	c.n++
	r.deliverLocked(presence(c.n), m.ConnID())
	return recovery, replayed
}

// replayLocked sends m the events after since, preceded by a gap frame when
// some of them are gone.
func (r *room) replayLocked(m Member, since *protocol.Position) (string, int) {
	from := since.Seq
	recovery := "ok"
	switch {
	case since.Epoch != r.st.epoch:
		recovery, from = "epoch", 0
		m.CatchUp(gapMessage(protocol.Gap{T: protocol.TypeGap, Room: r.name, Epoch: r.st.epoch, Reason: "epoch"}))
	case since.Seq >= r.st.seq:
		return recovery, 0
	case r.st.oldest() > since.Seq+1:
		recovery = "history"
		m.CatchUp(gapMessage(protocol.Gap{T: protocol.TypeGap, Room: r.name, Epoch: r.st.epoch, Reason: "history",
			From: since.Seq + 1, To: r.st.oldest() - 1}))
	}
	n := 0
	r.st.after(from, func(e *entry) {
		if m.CatchUp(e.msg) {
			n++
		}
	})
	return recovery, n
}

// publish numbers the message build makes, keeps it in the history and
// delivers it to every member but except.
func (r *room) publish(user string, build func(seq uint64, epoch string) *Message, except string, h *Hub) (uint64, string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.seq++
	msg := build(r.st.seq, r.st.epoch)
	r.st.append(&entry{seq: r.st.seq, msg: msg, at: h.cfg.Now(), user: user}, h.cfg.HistorySize, h.cfg.HistoryBytes)
	return r.st.seq, r.st.epoch, r.deliverLocked(msg, except)
}

// position returns the stream's epoch and last sequence number.
func (r *room) position() (string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.epoch, r.st.seq
}

// expire drops history older than before and reports whether the room is
// now empty and without history, so it can go.
func (r *room) expire(before time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.expire(before)
	return r.idleLocked()
}

// idle reports whether the room has no members, no history and no pins.
func (r *room) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.idleLocked()
}

func (r *room) idleLocked() bool {
	return len(r.members) == 0 && r.st.n == 0 && r.pins.Load() == 0
}

// remove takes m out of the room and tells the others.
func (r *room) remove(m Member, presence func(int) *Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.index[m.ConnID()]
	if !ok {
		return
	}
	last := len(r.members) - 1
	r.members[i] = r.members[last]
	r.index[r.members[i].ConnID()] = i
	r.members[last] = nil
	r.members = r.members[:last]
	delete(r.index, m.ConnID())
	n := 0
	if c := r.users[m.UserID()]; c != nil {
		c.n--
		n = c.n
		if c.n <= 0 {
			delete(r.users, m.UserID())
		}
	}
	r.deliverLocked(presence(n), m.ConnID())
}

func (r *room) list() protocol.RoomMembers {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := protocol.RoomMembers{Room: r.name, Members: make([]protocol.Member, 0, len(r.users))}
	for id, c := range r.users {
		out.Members = append(out.Members, protocol.Member{User: id, Name: c.name, Connections: c.n})
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].User < out.Members[j].User })
	return out
}

func (r *room) deliverLocked(msg *Message, except string) int {
	skip := -1
	if i, ok := r.index[except]; ok && except != "" {
		skip = i
	}
	n := 0
	for i, m := range r.members {
		if i != skip && m.Deliver(msg) {
			n++
		}
	}
	return n
}

func gapMessage(g protocol.Gap) *Message {
	b, _ := json.Marshal(g)
	return NewMessage(b, "")
}
