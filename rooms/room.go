package rooms

import (
	"sort"
	"sync"

	"github.com/ferryhq/ferry/protocol"
)

// room is a named room. Its lock is held while delivering, so every member
// sees a room's messages in the same order; Deliver never blocks, so holding
// it is short.
type room struct {
	name string

	mu      sync.Mutex
	members []Member          // dense, for a fast fan-out loop
	index   map[string]int    // connection id → position in members
	users   map[string]*count // user id → connections in this room
}

type count struct {
	name string
	n    int
}

func newRoom(name string) *room {
	return &room{name: name, index: make(map[string]int), users: make(map[string]*count)}
}

// add puts m in the room and tells the others with the message presence builds.
func (r *room) add(m Member, presence func(int) *Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.index[m.ConnID()]; ok {
		return
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
}

// remove takes m out of the room, tells the others, and returns how many
// members remain.
func (r *room) remove(m Member, presence func(int) *Message) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.index[m.ConnID()]
	if !ok {
		return len(r.members)
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
	return len(r.members)
}

func (r *room) has(connID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.index[connID]
	return ok
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

// deliver sends msg to every member but except ("" for none) and returns how
// many it was queued for.
func (r *room) deliver(msg *Message, except string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deliverLocked(msg, except)
}

func (r *room) deliverLocked(msg *Message, except string) int {
	n := 0
	for _, m := range r.members {
		if except != "" && m.ConnID() == except {
			continue
		}
		if m.Deliver(msg) {
			n++
		}
	}
	return n
}
