package rooms

import (
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Presence across nodes.
//
// Nodes sharing rooms (see SharedJournal) each hold their own connections.
// For a room's numbers, its members listing and its presence frames to
// agree on every node, each hub tells a Roster how many connections each
// user has in each room on this node, and the roster hands the hub the
// other nodes' figures through ApplyPresence. A room keeps those apart
// from its own members (per node, per user) and counts both: a user on two
// nodes is one user, its connections summed. A remote user appearing in or
// leaving a room is announced to the local members as a local one is, or
// counted in the next count frame when the room is large.

// Roster shares a hub's presence with the other nodes.
type Roster interface {
	// Set notes that this node now has conns connections of user, named
	// name, in room (0: none). The hub calls it under the room's lock, so
	// the calls for a room come in the order of the changes; it must not
	// block: a roster keeps the latest figure per room and user and writes
	// it later.
	Set(room, user, name string, conns int)
}

// Defaults of Config's remote presence bounds.
const (
	DefaultRemotePresence        = 200_000
	DefaultRemotePresencePerRoom = 50_000
)

// maxRemoteConns caps one remote entry's connection count: a figure past
// it comes from a broken or hostile node.
const maxRemoteConns = 1 << 20

func (c *Config) applyRosterDefaults() {
	if c.RemotePresence <= 0 {
		c.RemotePresence = DefaultRemotePresence
	}
	if c.RemotePresencePerRoom <= 0 {
		c.RemotePresencePerRoom = DefaultRemotePresencePerRoom
	}
}

// remoteAccount is the hub's count of the other nodes' figures.
type remoteAccount struct {
	entries atomic.Int64
	warned  atomic.Int64 // unix nanoseconds of the last warning
}

// warn says figures are being ignored, at most once a minute: a node
// flooding the roster does not flood the log too.
func (a *remoteAccount) warn(log *slog.Logger, room, node string) {
	now := time.Now().UnixNano()
	last := a.warned.Load()
	if now-last < int64(time.Minute) || !a.warned.CompareAndSwap(last, now) {
		return
	}
	log.Warn("presence: too many users on other nodes; ignoring more", "room", room, "node", node)
}

// remoteRoom is what a room knows of the other nodes' connections in it.
type remoteRoom struct {
	byNode  map[string]map[string]int // node → user → connections
	entries int                       // (node, user) pairs in byNode
	conns   int                       // their connections, summed
}

// ApplyPresence tells the hub that node, another node, now has conns
// connections of user, named name, in room (0: none). Figures are
// absolute, so a repeated or replayed one changes nothing. A room with
// users elsewhere stays in memory (without its history) while it has
// them. Invalid figures, and new ones past RemotePresence entries in all
// or RemotePresencePerRoom in the room, are ignored.
func (h *Hub) ApplyPresence(node, room, user, name string, conns int) {
	if node == "" || user == "" || conns < 0 || conns > maxRemoteConns || ValidRoom(room) != nil {
		return
	}
	r := h.pinRoom(room)
	if r == nil {
		if conns == 0 {
			return // nothing of it here to forget
		}
		h.mu.Lock()
		r = h.roomLocked(room)
		r.pins.Add(1)
		h.mu.Unlock()
	}
	r.mu.Lock()
	r.setRemoteLocked(h, node, user, name, conns)
	members := len(r.members)
	r.mu.Unlock()
	if members > 0 {
		// The room cannot end: no need of the hub's lock, which every
		// join and leave of the other nodes would otherwise take here.
		r.pins.Add(-1)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r.pins.Add(-1)
	if h.rooms[room] == r && r.tryIdle() {
		delete(h.rooms, room)
	}
}

// pinRoom returns the named room, pinned, if it is in memory; the caller
// unpins it.
func (h *Hub) pinRoom(name string) *room {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.rooms[name]
	if r != nil {
		r.pins.Add(1)
	}
	return r
}

// setRemoteLocked records node's figure for user and tells the members
// when the user's connections in the room changed. r.mu is held.
func (r *room) setRemoteLocked(h *Hub, node, user, name string, conns int) {
	if r.remote.byNode == nil {
		r.remote.byNode = make(map[string]map[string]int)
	}
	users := r.remote.byNode[node]
	old := users[user]
	if conns == old {
		if c := r.users[user]; c != nil && c.n == 0 && name != "" {
			c.name = name // renamed
		}
		return
	}
	if old == 0 {
		if r.remote.entries >= h.cfg.RemotePresencePerRoom || h.remote.entries.Load() >= int64(h.cfg.RemotePresence) {
			h.remote.warn(h.cfg.Log, r.name, node)
			return
		}
		if users == nil {
			users = make(map[string]int)
			r.remote.byNode[node] = users
		}
		r.remote.entries++
		h.remote.entries.Add(1)
	}
	if conns == 0 {
		delete(users, user)
		if len(users) == 0 {
			delete(r.remote.byNode, node)
		}
		r.remote.entries--
		h.remote.entries.Add(-1)
	} else {
		users[user] = conns
	}
	r.remote.conns += conns - old
	c := r.users[user]
	if c == nil {
		c = &count{name: name}
		r.users[user] = c
	}
	if c.n == 0 && name != "" {
		c.name = name // a local connection's name wins
	}
	c.rn += conns - old
	total := c.n + c.rn
	if total == 0 {
		delete(r.users, user)
	}
	action := protocol.PresenceJoin
	if conns < old {
		action = protocol.PresenceLeave
	}
	r.presenceLocked(h, func(n int) *Message {
		b, _ := json.Marshal(protocol.Presence{T: protocol.TypePresence, Room: r.name, Action: action,
			User: user, Name: c.name, Connections: n})
		return NewMessage(b, "")
	}, total, "")
}

// shareLocked tells the roster, if any, this node's connections of user
// in the room. r.mu is held.
func (r *room) shareLocked(h *Hub, user, name string, n int) {
	if h.cfg.Roster != nil {
		h.cfg.Roster.Set(r.name, user, name, n)
	}
}

// connsLocked is how many connections the room has on all nodes. r.mu is
// held.
func (r *room) connsLocked() int { return len(r.members) + r.remote.conns }
