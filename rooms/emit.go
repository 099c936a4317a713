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

// EmitOptions are the optional parts of an emit.
type EmitOptions struct {
	// MsgID is the sender's id for the event; an emit with an id already
	// seen from the same user is not published again.
	MsgID string
	// Receipt asks every recipient to confirm reception; the sender then
	// gets a receipt frame per user.
	Receipt bool
}

var nullJSON = json.RawMessage("null")

// FileEvent is the event the server publishes for a finished upload; clients
// may not emit it, so a "file" event always comes from the server.
const FileEvent = "file"

// Emit sends a named event from m. A named room requires m to be in it and
// numbers the event in the room's stream; a user who is not connected gets
// it later (queued), a connection must be connected.
func (h *Hub) Emit(m Member, t Target, event string, data json.RawMessage, opt EmitOptions) (protocol.Delivered, error) {
	if err := ValidEvent(event); err != nil {
		return protocol.Delivered{}, err
	}
	if event == FileEvent {
		return protocol.Delivered{}, protocol.Errorf(protocol.CodeInvalidEvent, "the event name %q is reserved for the server's file announcements", FileEvent)
	}
	if err := validMsgID(opt.MsgID); err != nil {
		return protocol.Delivered{}, err
	}
	kind, name, err := resolve(t)
	if err != nil {
		return protocol.Delivered{}, err
	}
	if opt.MsgID != "" {
		if d, seen := h.dedup.begin(m.UserID(), opt.MsgID, h.cfg.Now()); seen {
			d.Duplicate = true
			return d, nil
		}
	}
	d, err := h.emit(m, kind, name, t.ExceptSelf, event, data, opt)
	if opt.MsgID != "" {
		h.dedup.end(m.UserID(), opt.MsgID, d, err == nil)
	}
	return d, err
}

func (h *Hub) emit(m Member, kind, name string, exceptSelf bool, event string, data json.RawMessage, opt EmitOptions) (protocol.Delivered, error) {
	except := ""
	if exceptSelf {
		except = m.ConnID()
	}
	from := protocol.From{Conn: m.ConnID(), User: m.UserID(), Name: m.UserName()}
	if kind != "" {
		return h.direct(kind, name, m.UserID(), opt.MsgID, except, false, func(seq uint64) *Message {
			// Seq 0: a frame routed to another hub, which numbers it.
			if opt.Receipt && seq != 0 {
				// Tracked as long as the message may wait for its user.
				h.track.add(trackKey{kind + name, h.epoch, seq}, from, h.cfg.Now().Add(h.cfg.OfflineTTL), true)
			}
			return h.event(kind+name, event, data, from, seq, h.epoch, opt)
		})
	}
	// Pinned: if m leaves meanwhile, the room does not end (and leave
	// memory) while the event goes into it.
	r, err := h.pinMemberRoom(m, name)
	if err != nil {
		return protocol.Delivered{}, err
	}
	defer r.pins.Add(-1)
	if h.cfg.HistorySize > 0 {
		if err := h.hist.allow(m.UserID(), len(data)+len(event)+envelopeBytes); err != nil {
			return protocol.Delivered{}, err
		}
	}
	return r.publish(h, m.UserID(), opt.MsgID, func(seq uint64, epoch string) *Message {
		return h.event(name, event, data, from, seq, epoch, opt)
	}, receiptSender(from, opt.Receipt), except)
}

// envelopeBytes is about what an event frame adds to its name and data.
const envelopeBytes = 200

// Publish sends an event to a named room on the server's behalf (a file
// announcement names its uploader in from), whoever is in it. It returns the
// event's position; ok is false when the room name is not valid, or when the
// room's Journal failed (logged; the event was not published).
func (h *Hub) Publish(roomName, event string, data json.RawMessage, from protocol.From, receipt bool) (d protocol.Delivered, ok bool) {
	if ValidRoom(roomName) != nil {
		return protocol.Delivered{}, false
	}
	// The room may have emptied and expired meanwhile: the announcement
	// still belongs in its history. Pinned, so that the sweep cannot end it
	// between finding it and publishing.
	h.mu.Lock()
	r := h.roomLocked(roomName)
	r.pins.Add(1)
	h.mu.Unlock()
	defer r.pins.Add(-1)
	opt := EmitOptions{Receipt: receipt}
	d, err := r.publish(h, from.User, "", func(seq uint64, epoch string) *Message {
		return h.event(roomName, event, data, from, seq, epoch, opt)
	}, receiptSender(from, receipt), "")
	if err != nil {
		h.cfg.Log.Error("publish to room", "room", roomName, "event", event, "err", err)
		return protocol.Delivered{}, false
	}
	return d, true
}

// receiptSender is the sender a room's event is tracked for, for its receipts:
// nil without.
func receiptSender(from protocol.From, receipt bool) *protocol.From {
	if !receipt {
		return nil
	}
	return &from
}

// direct delivers to every connection of a user, or to one connection. A
// user without connections here goes to the other hubs through the Router
// (not when routed: the message came from one); a user without
// connections anywhere gets the message in their mailbox, and with a
// Mailboxes store, the sender's ack waits until the store has it.
func (h *Hub) direct(kind, id, sender, msgID, except string, routed bool, build func(seq uint64) *Message) (protocol.Delivered, error) {
	d, err := h.directOnce(kind, id, sender, msgID, except, routed, build)
	// errNoSeq itself, not any storage_unavailable (errors.Is matches codes).
	if h.reserveSeqs() && err == errNoSeq {
		// Past the saved seqs, which could not be saved in time: now
		// they are.
		d, err = h.directOnce(kind, id, sender, msgID, except, routed, build)
	}
	return d, err
}

func (h *Hub) directOnce(kind, id, sender, msgID, except string, routed bool, build func(seq uint64) *Message) (protocol.Delivered, error) {
	route := h.cfg.Router != nil && kind == UserPrefix && !routed
	deliver := build
	var msg *Message
	if route {
		deliver = func(seq uint64) *Message { msg = build(seq); return msg }
	}
	h.mu.RLock()
	d, online, err := h.deliverDirectLocked(kind, id, except, deliver)
	h.mu.RUnlock()
	if online && err == nil && route {
		// The user may have connections on other hubs too: they get a
		// copy, which they number themselves.
		h.cfg.Router.Publish(id, msg.JSON)
	}
	if online || err != nil {
		return d, err
	}
	if route {
		if d, ok, err := h.routeSend(id, build); ok {
			return d, err
		}
	}
	if kind != UserPrefix || h.cfg.OfflineSize <= 0 {
		return protocol.Delivered{}, protocol.Errorf(protocol.CodeUnknownTarget, "%s%s is not connected", kind, id)
	}
	// Queueing changes the mailboxes: under the write lock, and only if the
	// user did not connect meanwhile.
	h.mu.Lock()
	if d, online, err := h.deliverDirectLocked(kind, id, except, build); online || err != nil {
		h.mu.Unlock()
		return d, err
	}
	seq, err := h.nextDMSeq()
	if err != nil {
		h.mu.Unlock()
		return protocol.Delivered{}, err
	}
	msg, at, epoch := build(seq), h.cfg.Now(), h.epoch
	var st *letterState
	if h.mailStore != nil {
		st = &letterState{}
	}
	err = h.queueLocked(id, sender, msg, at, st)
	if err == nil && h.cfg.Router != nil {
		h.recheckLocked(id)
	}
	h.mu.Unlock()
	if err != nil {
		return protocol.Delivered{}, err
	}
	if st != nil {
		// Outside the hub's lock: the message already waits (a quota
		// decision taken in order with the others); the store mirrors it.
		l := Letter{User: id, Sender: sender, MsgID: msgID, Epoch: epoch, Seq: seq, At: at, JSON: msg.JSON}
		if err := h.putLetter(l, st); err != nil {
			return protocol.Delivered{}, err
		}
	}
	return protocol.Delivered{Seq: seq, Epoch: epoch, Queued: true}, nil
}

// deliverDirectLocked delivers to the target's connections, if it has any.
func (h *Hub) deliverDirectLocked(kind, id, except string, build func(seq uint64) *Message) (protocol.Delivered, bool, error) {
	var targets []*memberState
	if kind == UserPrefix {
		for _, st := range h.users[id] {
			targets = append(targets, st)
		}
	} else if st := h.members[id]; st != nil {
		targets = append(targets, st)
	}
	if len(targets) == 0 {
		return protocol.Delivered{}, false, nil
	}
	seq, err := h.nextDMSeq()
	if err != nil {
		return protocol.Delivered{}, false, err
	}
	msg := build(seq)
	n := 0
	for _, st := range targets {
		if st.m.ConnID() != except && st.m.Deliver(msg) {
			n++
		}
	}
	return protocol.Delivered{Delivered: n, Seq: seq, Epoch: h.epoch}, true, nil
}

func (h *Hub) event(room, event string, data json.RawMessage, from protocol.From, seq uint64, epoch string, opt EmitOptions) *Message {
	if len(data) == 0 {
		data = nullJSON
	}
	ev := protocol.Event{
		T: protocol.TypeEvent, Room: room, Event: event, Data: data, From: from,
		TS: h.cfg.Now().UnixMilli(), Seq: seq, Epoch: epoch, MsgID: opt.MsgID, Receipt: opt.Receipt,
	}
	b, err := json.Marshal(ev)
	if err != nil {
		// data was validated when the frame was decoded; this is a bug.
		h.cfg.Log.Error("encode event", "err", err)
		ev.Data = nullJSON
		b, _ = json.Marshal(ev)
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
		kind, name = UserPrefix, t.User
	case t.Conn != "":
		kind, name = ConnPrefix, t.Conn
	case strings.HasPrefix(t.Room, UserPrefix):
		kind, name = UserPrefix, strings.TrimPrefix(t.Room, UserPrefix)
	case strings.HasPrefix(t.Room, ConnPrefix):
		kind, name = ConnPrefix, strings.TrimPrefix(t.Room, ConnPrefix)
	default:
		if err := ValidRoom(t.Room); err != nil {
			return "", "", err
		}
		return "", t.Room, nil
	}
	if !validID(name) {
		return "", "", protocol.Errorf(protocol.CodeInvalidTarget, "%q is not a valid id", name)
	}
	return kind, name, nil
}

// validID accepts user and connection ids: 1 to 128 printable ASCII
// characters without spaces.
func validID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func validMsgID(s string) error {
	if s != "" && (len(s) > MaxNameLen || !validID(s)) {
		return protocol.Errorf(protocol.CodeBadFrame, "msg_id has 1 to %d printable characters without spaces", MaxNameLen)
	}
	return nil
}
