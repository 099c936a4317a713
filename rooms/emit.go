package rooms

import (
	"encoding/json"
	"strings"

	"github.com/ferryhq/ferry/protocol"
)

// Target says where an event goes: exactly one of Room, User and Conn.
// Room may also name a built-in room ("user:<id>", "conn:<id>").
type Target struct {
	Room       string
	User       string
	Conn       string
	ExceptSelf bool
}

var nullJSON = json.RawMessage("null")

// Emit sends a named event from m and returns how many connections it was
// queued for. A named room requires m to be in it; a user or a connection
// must be connected.
func (h *Hub) Emit(m Member, t Target, event string, data json.RawMessage) (int, error) {
	if err := ValidEvent(event); err != nil {
		return 0, err
	}
	kind, name, err := resolve(t)
	if err != nil {
		return 0, err
	}
	except := ""
	if t.ExceptSelf {
		except = m.ConnID()
	}
	from := protocol.From{Conn: m.ConnID(), User: m.UserID(), Name: m.UserName()}
	switch kind {
	case UserPrefix, ConnPrefix:
		return h.direct(kind, name, h.event(kind+name, event, data, from), except)
	}
	h.mu.RLock()
	st, err := h.stateLocked(m)
	var r *room
	if err == nil {
		r = st.rooms[name]
		if r == nil {
			if h.rooms[name] == nil {
				err = protocol.Errorf(protocol.CodeUnknownRoom, "there is no room %q", name)
			} else {
				err = protocol.Errorf(protocol.CodeNotMember, "you are not in room %q", name)
			}
		}
	}
	h.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	return r.deliver(h.event(name, event, data, from), except), nil
}

// Publish sends an event to a named room on the server's behalf (file
// announcements), whoever is in it.
func (h *Hub) Publish(roomName, event string, data json.RawMessage, from protocol.From) int {
	h.mu.RLock()
	r := h.rooms[roomName]
	h.mu.RUnlock()
	if r == nil {
		return 0
	}
	return r.deliver(h.event(roomName, event, data, from), "")
}

// direct delivers to every connection of a user, or to one connection.
func (h *Hub) direct(kind, id string, msg *Message, except string) (int, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var targets []*memberState
	if kind == UserPrefix {
		for _, st := range h.users[id] {
			targets = append(targets, st)
		}
	} else if st := h.members[id]; st != nil {
		targets = append(targets, st)
	}
	if len(targets) == 0 {
		return 0, protocol.Errorf(protocol.CodeUnknownTarget, "%s%s is not connected", kind, id)
	}
	n := 0
	for _, st := range targets {
		if st.m.ConnID() != except && st.m.Deliver(msg) {
			n++
		}
	}
	return n, nil
}

func (h *Hub) event(room, event string, data json.RawMessage, from protocol.From) *Message {
	if len(data) == 0 {
		data = nullJSON
	}
	b, err := json.Marshal(protocol.Event{
		T: protocol.TypeEvent, Room: room, Event: event, Data: data, From: from,
		TS: h.cfg.Now().UnixMilli(),
	})
	if err != nil {
		// data was validated when the frame was decoded; this is a bug.
		h.cfg.Log.Error("encode event", "err", err)
		b, _ = json.Marshal(protocol.Event{T: protocol.TypeEvent, Room: room, Event: event, Data: nullJSON, From: from})
	}
	return NewMessage(b, from.Conn)
}

// resolve turns a target into a kind (UserPrefix, ConnPrefix or "" for a named
// room) and a name.
func resolve(t Target) (kind, name string, err error) {
	set := 0
	for _, s := range []string{t.Room, t.User, t.Conn} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		return "", "", protocol.Errorf(protocol.CodeInvalidTarget, "give exactly one of room, user and conn")
	}
	switch {
	case t.User != "":
		return UserPrefix, t.User, nil
	case t.Conn != "":
		return ConnPrefix, t.Conn, nil
	case strings.HasPrefix(t.Room, UserPrefix):
		return UserPrefix, strings.TrimPrefix(t.Room, UserPrefix), nil
	case strings.HasPrefix(t.Room, ConnPrefix):
		return ConnPrefix, strings.TrimPrefix(t.Room, ConnPrefix), nil
	}
	if err := ValidRoom(t.Room); err != nil {
		return "", "", err
	}
	return "", t.Room, nil
}
