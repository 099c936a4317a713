package rooms

import (
	"container/heap"
	"encoding/json"
	"sort"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Presence in large rooms.
//
// A room announces each join and leave to its members while it has at most
// PresenceLimit users. Past that, announcing would cost a frame to every
// member per join: filling a room of n costs n² frames, and a room of
// thousands spends its members' bandwidth on arrivals. A large room
// instead marks its numbers changed, and the hub's loop sends one count
// frame to its members at most every PresenceInterval. The numbers are the
// room's own, so they are exact whenever they are sent, and members listings
// are paged, so a join's answer is bounded too.

// Defaults of Config's presence fields.
const (
	DefaultPresenceLimit    = 100
	DefaultPresenceInterval = time.Second
)

// announcesLocked reports whether the room announces joins and leaves one
// by one. r.mu is held.
func (r *room) announcesLocked(h *Hub) bool {
	return h.cfg.PresenceLimit < 0 || len(r.users) <= h.cfg.PresenceLimit
}

// presenceLocked tells the room's members about a join or leave: one frame
// to each, or, in a large room, a mark for the next count. r.mu is held.
func (r *room) presenceLocked(h *Hub, presence func(int) *Message, n int, except string) {
	if r.announcesLocked(h) {
		r.deliverLocked(presence(n), except)
		return
	}
	r.counted.Store(true)
}

// sendCounts sends a count frame to the members of each room whose numbers
// changed since the last one.
func (h *Hub) sendCounts() {
	h.mu.RLock()
	var changed []*room
	for _, r := range h.rooms {
		if r.counted.Load() {
			changed = append(changed, r)
		}
	}
	h.mu.RUnlock()
	for _, r := range changed {
		r.mu.Lock()
		if r.counted.Swap(false) {
			b, _ := json.Marshal(protocol.Presence{T: protocol.TypePresence, Room: r.name, Action: protocol.PresenceCount,
				Users: len(r.users), Connections: r.connsLocked()})
			r.deliverLocked(NewMessage(b, ""), "")
		}
		r.mu.Unlock()
	}
}

// page lists up to limit of the room's users after the user id after, by
// id, with the room's exact numbers. It costs O(users × log limit), not a
// sort of the whole room.
func (r *room) page(after string, limit int) protocol.RoomMembers {
	if limit <= 0 {
		limit = protocol.DefaultMembersPage
	}
	limit = min(limit, protocol.MaxMembersPage)
	r.mu.Lock()
	defer r.mu.Unlock()
	// The limit+1 smallest ids after after, in a max-heap: one more than a
	// page says whether there is a next one.
	h := &idHeap{}
	for id := range r.users {
		if id <= after {
			continue
		}
		if h.Len() <= limit {
			heap.Push(h, id)
		} else if id < (*h)[0] {
			(*h)[0] = id
			heap.Fix(h, 0)
		}
	}
	ids := []string(*h)
	sort.Strings(ids)
	out := protocol.RoomMembers{Room: r.name, Count: len(r.users), Connections: r.connsLocked()}
	if len(ids) > limit {
		ids = ids[:limit]
		out.Next = ids[limit-1]
	}
	out.Members = make([]protocol.Member, len(ids))
	for i, id := range ids {
		c := r.users[id]
		out.Members[i] = protocol.Member{User: id, Name: c.name, Connections: c.n + c.rn}
	}
	return out
}

// idHeap is a max-heap of user ids.
type idHeap []string

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
