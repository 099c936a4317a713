package rooms

import (
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Config configures a Hub. Zero values mean the documented defaults.
type Config struct {
	// MaxRooms is how many named rooms one connection may be in. Default 100.
	MaxRooms int
	// Log receives the hub's diagnostics. Default: discard.
	Log *slog.Logger
	// Now is the clock stamped on events. Default time.Now.
	Now func() time.Time
}

// Hub keeps connections, rooms and who is in them, and fans events out.
// Its methods are safe for concurrent use.
type Hub struct {
	cfg Config

	mu      sync.RWMutex
	rooms   map[string]*room
	members map[string]*memberState            // by connection id
	users   map[string]map[string]*memberState // user id → connection id → state
}

type memberState struct {
	m     Member
	rooms map[string]*room
}

// New returns a Hub.
func New(cfg Config) *Hub {
	if cfg.MaxRooms <= 0 {
		cfg.MaxRooms = 100
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Hub{
		cfg:     cfg,
		rooms:   make(map[string]*room),
		members: make(map[string]*memberState),
		users:   make(map[string]map[string]*memberState),
	}
}

// Stats are the hub's gauges.
type Stats struct {
	Connections int
	Users       int
	Rooms       int
}

// Stats returns the current gauges.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return Stats{Connections: len(h.members), Users: len(h.users), Rooms: len(h.rooms)}
}

// Register adds a connection to the hub (and so to its built-in rooms).
func (h *Hub) Register(m Member) {
	st := &memberState{m: m, rooms: make(map[string]*room)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.members[m.ConnID()] = st
	conns := h.users[m.UserID()]
	if conns == nil {
		conns = make(map[string]*memberState)
		h.users[m.UserID()] = conns
	}
	conns[m.ConnID()] = st
}

// Unregister removes a connection from every room it was in, telling the
// other members, and from the hub. Unregistering twice is harmless.
func (h *Hub) Unregister(m Member) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.members[m.ConnID()]
	if st == nil || st.m != m {
		return
	}
	for name, r := range st.rooms {
		h.leaveLocked(st, name, r)
	}
	delete(h.members, m.ConnID())
	if conns := h.users[m.UserID()]; conns != nil {
		delete(conns, m.ConnID())
		if len(conns) == 0 {
			delete(h.users, m.UserID())
		}
	}
}

// Join puts m in the named room, creating it if needed, and returns the
// room's members. Joining twice is not an error.
func (h *Hub) Join(m Member, name string) (protocol.RoomMembers, error) {
	if err := ValidRoom(name); err != nil {
		return protocol.RoomMembers{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := h.stateLocked(m)
	if err != nil {
		return protocol.RoomMembers{}, err
	}
	r := st.rooms[name]
	if r == nil {
		if len(st.rooms) >= h.cfg.MaxRooms {
			return protocol.RoomMembers{}, protocol.Errorf(protocol.CodeTooManyRooms, "a connection may be in at most %d rooms", h.cfg.MaxRooms)
		}
		r = h.rooms[name]
		if r == nil {
			r = newRoom(name)
			h.rooms[name] = r
		}
		st.rooms[name] = r
		r.add(m, h.presence(r.name, "join", m))
	}
	return r.list(), nil
}

// Leave takes m out of the named room.
func (h *Hub) Leave(m Member, name string) error {
	if err := ValidRoom(name); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := h.stateLocked(m)
	if err != nil {
		return err
	}
	r := st.rooms[name]
	if r == nil {
		return protocol.Errorf(protocol.CodeNotMember, "you are not in room %q", name)
	}
	h.leaveLocked(st, name, r)
	return nil
}

func (h *Hub) leaveLocked(st *memberState, name string, r *room) {
	delete(st.rooms, name)
	if r.remove(st.m, h.presence(name, "leave", st.m)) == 0 {
		delete(h.rooms, name)
	}
}

// presence returns a builder for the presence frame about m; the room calls
// it with the user's connection count once it knows it.
func (h *Hub) presence(room, action string, m Member) func(count int) *Message {
	return func(count int) *Message {
		b, _ := json.Marshal(protocol.Presence{
			T: protocol.TypePresence, Room: room, Action: action,
			User: m.UserID(), Name: m.UserName(), Conn: m.ConnID(), Connections: count,
		})
		return NewMessage(b, m.ConnID())
	}
}

// Rooms lists the named rooms m is in, sorted.
func (h *Hub) Rooms(m Member) ([]string, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st, err := h.stateLocked(m)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(st.rooms))
	for name := range st.rooms {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// Members lists the users in a room m is in.
func (h *Hub) Members(m Member, name string) (protocol.RoomMembers, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st, err := h.stateLocked(m)
	if err != nil {
		return protocol.RoomMembers{}, err
	}
	r := st.rooms[name]
	if r == nil {
		if _, ok := h.rooms[name]; !ok && ValidRoom(name) == nil {
			return protocol.RoomMembers{}, protocol.Errorf(protocol.CodeUnknownRoom, "there is no room %q", name)
		}
		return protocol.RoomMembers{}, protocol.Errorf(protocol.CodeNotMember, "you are not in room %q", name)
	}
	return r.list(), nil
}

// IsMember reports whether any connection of user is in the named room.
func (h *Hub) IsMember(user, name string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, st := range h.users[user] {
		if st.rooms[name] != nil {
			return true
		}
	}
	return false
}

func (h *Hub) stateLocked(m Member) (*memberState, error) {
	st := h.members[m.ConnID()]
	if st == nil || st.m != m {
		return nil, protocol.Errorf(protocol.CodeInternal, "connection %s is not registered", m.ConnID())
	}
	return st, nil
}
