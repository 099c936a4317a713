package rooms

import (
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
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

	// HistorySize is how many recent events a room keeps for replay.
	// Default 1000; negative keeps none.
	HistorySize int
	// HistoryBytes bounds the encoded size of a room's kept events.
	// Default 4 MiB.
	HistoryBytes int
	// HistoryUserBytes bounds the history bytes one user's events take
	// in all rooms together: past it, the user's emits to rooms are
	// refused (over_quota) until some expire. Default 64 MiB.
	HistoryUserBytes int
	// HistoryTotalBytes bounds the history of all rooms together: past
	// it, users whose events take over an eighth of HistoryUserBytes are
	// refused. Default 1 GiB.
	HistoryTotalBytes int
	// HistoryTTL is how long an event is kept; a room without members
	// lives as long as its history. Default 10 minutes, DefaultJournalTTL
	// with a Journal.
	HistoryTTL time.Duration

	// Journal, when set, keeps named rooms' history beyond the process: a
	// room restored after a restart keeps its epoch and seq, so clients
	// resume exactly. The journal then holds a room's history, memory only
	// the rooms someone is in (HistoryUserBytes and HistoryTotalBytes
	// bound that memory; the journal bounds its own storage). When an
	// append fails, the emit fails with storage_unavailable and the room
	// starts a new epoch; a SharedJournal's append is first made again
	// for up to three times JournalTimeout, and stored once (see
	// publish), with the room's lock held: the room's other joins and
	// emits wait meanwhile, other rooms do not. Ignored when HistorySize
	// is negative. Default
	// nil: history in memory only, lost with the process.
	Journal Journal
	// JournalTimeout bounds each call to the Journal; a room waits for
	// it, others do not. With a SharedJournal it also bounds how long one
	// event may keep losing the race for its room's next position to
	// other nodes before the emit fails with storage_unavailable (a client
	// resending it with its msg_id then gets it published exactly once).
	// Default DefaultJournalTimeout.
	JournalTimeout time.Duration

	// Receipts, when set with a Journal, keeps the receipts of named
	// rooms' events beyond the process and shares them with the other
	// nodes on the journal (see ReceiptLog). Default nil: in memory only,
	// this node's own.
	Receipts ReceiptLog

	// Mailboxes, when set, keeps the direct messages waiting for users who
	// are not connected beyond the process, with their message ids, and
	// the direct-message stream's epoch and seq: LoadMailboxes restores
	// them, and must be called before the hub is used. A waiting message is
	// stored before its sender's ack says queued; when that fails, the emit
	// fails with storage_unavailable. Delivered and pushed-out messages are
	// deleted from it by Run. Default nil: in memory only, lost with the
	// process.
	Mailboxes Mailboxes
	// Router, when set, carries direct messages to and from the other
	// hubs (ferry nodes) with connections of the same users (see Router).
	// Default nil: a user's direct messages reach its connections on this
	// hub only, and wait here for the others.
	Router Router

	// OfflineSize is how many direct messages wait for a user who is not
	// connected. Default 100; negative keeps none.
	OfflineSize int
	// OfflineTTL is how long they wait. Default 24 hours.
	OfflineTTL time.Duration
	// OfflineBytes bounds the encoded size of one user's waiting messages;
	// the oldest go first. Default 1 MiB.
	OfflineBytes int
	// OfflineSenderBytes bounds the encoded size of the messages one user
	// has waiting for others, in all mailboxes: past it, its messages to
	// users who are not connected are refused (over_quota). Default 4 MiB.
	OfflineSenderBytes int
	// OfflineUsers bounds how many users may have messages waiting.
	// Default 10,000.
	OfflineUsers int
	// OfflineTotalBytes bounds all waiting messages together: past it, direct
	// messages to users who are not connected are refused. Default 64 MiB.
	OfflineTotalBytes int

	// Dedup is how many client message ids are remembered (each for
	// HistoryTTL) so that a resent emit is not published twice.
	// Default 100,000.
	Dedup int
	// Tracked is how many events requesting receipts are tracked at once
	// (each for HistoryTTL). Default 100,000.
	Tracked int
	// DedupPerUser and TrackedPerUser bound the same per user: a user
	// past its share, or adding to a full table, makes room with its own
	// oldest entry, so nobody pushes out another's. Defaults 10,000.
	DedupPerUser, TrackedPerUser int

	// PresenceLimit is how many users a room may have and still announce
	// each join and leave to its members; a larger room sends a presence
	// frame of action count, with its exact numbers, at most every
	// PresenceInterval when they changed (see presence.go). Default
	// DefaultPresenceLimit; negative: every room announces every join.
	PresenceLimit int
	// PresenceInterval: default DefaultPresenceInterval.
	PresenceInterval time.Duration

	// Roster, when set, shares presence with the other nodes on the same
	// rooms (see roster.go): it learns this node's figures, and hands the
	// others' to ApplyPresence. Default nil: this node's presence only.
	Roster Roster
	// RemotePresence bounds the (node, user, room) figures kept from other
	// nodes, RemotePresencePerRoom those of one room. Defaults
	// DefaultRemotePresence and DefaultRemotePresencePerRoom.
	RemotePresence, RemotePresencePerRoom int
}

func (c *Config) applyDefaults() {
	if c.MaxRooms <= 0 {
		c.MaxRooms = 100
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HistorySize == 0 {
		c.HistorySize = 1000
	}
	if c.HistoryUserBytes <= 0 {
		c.HistoryUserBytes = 64 << 20
	}
	if c.HistoryTotalBytes <= 0 {
		c.HistoryTotalBytes = 1 << 30
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = 4 << 20
	}
	if c.HistorySize < 0 {
		c.Journal = nil // nothing to keep
	}
	if c.Journal == nil {
		c.Receipts = nil // which events ask for receipts is in the journal
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = 10 * time.Minute
		if c.Journal != nil {
			c.HistoryTTL = DefaultJournalTTL
		}
	}
	if c.JournalTimeout <= 0 {
		c.JournalTimeout = DefaultJournalTimeout
	}
	if c.OfflineSize == 0 {
		c.OfflineSize = 100
	}
	if c.OfflineTTL <= 0 {
		c.OfflineTTL = 24 * time.Hour
	}
	if c.OfflineUsers <= 0 {
		c.OfflineUsers = 10000
	}
	if c.OfflineBytes <= 0 {
		c.OfflineBytes = 1 << 20
	}
	if c.OfflineTotalBytes <= 0 {
		c.OfflineTotalBytes = 64 << 20
	}
	if c.OfflineSenderBytes <= 0 {
		c.OfflineSenderBytes = 4 << 20
	}
	if c.DedupPerUser <= 0 {
		c.DedupPerUser = 10_000
	}
	if c.TrackedPerUser <= 0 {
		c.TrackedPerUser = 10_000
	}
	if c.PresenceLimit == 0 {
		c.PresenceLimit = DefaultPresenceLimit
	}
	if c.PresenceInterval <= 0 {
		c.PresenceInterval = DefaultPresenceInterval
	}
	c.applyRosterDefaults()
	if c.Dedup <= 0 {
		c.Dedup = 100000
	}
	if c.Tracked <= 0 {
		c.Tracked = 100000
	}
}

// Hub keeps connections, rooms and who is in them, and fans events out.
// Its methods are safe for concurrent use.
type Hub struct {
	cfg Config

	mu      sync.RWMutex
	rooms   map[string]*room
	members map[string]*memberState            // by connection id
	users   map[string]map[string]*memberState // user id → connection id → state
	mail    map[string]*mailbox                // user id → direct messages waiting
	// mailBytes is the JSON size of every message in mail, mailBySender
	// the same per sending user.
	mailBytes    int
	mailBySender map[string]int

	// dmSeq numbers direct messages: unique and increasing, not contiguous
	// per user (direct messages are not replayed, only receipted). With a
	// Mailboxes store, seqs go up to dmCeiling, which the store has saved
	// (see reserveSeqs), so that a restart never hands one out again.
	dmSeq     atomic.Uint64
	dmCeiling atomic.Uint64
	reserving atomic.Bool
	dedup     dedup
	track     tracker
	// epoch is the direct-message stream's: set by New, or by
	// LoadMailboxes before the hub is used.
	epoch string
	// mailStore is cfg.Mailboxes: nil keeps waiting messages in memory
	// only. mailLoaded says LoadMailboxes ran; ops are the deletions the
	// store has still to make, and mailKick tells Run of them.
	mailStore  Mailboxes
	mailLoaded bool
	ops        mailOps
	mailKick   chan struct{}
	route      routing
	hist       *histAccount
	// journal is cfg.Journal: nil keeps rooms' history in memory only.
	journal Journal
	// maxKeep is the largest event frame kept for replay: HistoryBytes,
	// or less if the journal stores less (JournalLimit).
	maxKeep int
	// remote counts the other nodes' figures all rooms keep (see
	// roster.go).
	remote remoteAccount
}

type memberState struct {
	m     Member
	rooms map[string]*room
}

// New returns a Hub. Run must be running for history, waiting messages and
// receipts to expire.
func New(cfg Config) *Hub {
	cfg.applyDefaults()
	return &Hub{
		cfg:          cfg,
		rooms:        make(map[string]*room),
		members:      make(map[string]*memberState),
		users:        make(map[string]map[string]*memberState),
		mail:         make(map[string]*mailbox),
		mailBySender: make(map[string]int),
		dedup:        newDedup(cfg.DedupPerUser, cfg.Dedup),
		track:        newTracker(cfg.TrackedPerUser, cfg.Tracked),
		hist:         newHistAccount(cfg.HistoryUserBytes, cfg.HistoryTotalBytes),
		epoch:        newEpoch(),
		journal:      cfg.Journal,
		maxKeep:      maxKeep(cfg),
		mailStore:    cfg.Mailboxes,
		mailKick:     make(chan struct{}, 1),
		route:        newRouting(),
	}
}

func maxKeep(cfg Config) int {
	if l, ok := cfg.Journal.(JournalLimit); ok {
		return min(cfg.HistoryBytes, l.MaxRecordBytes())
	}
	return cfg.HistoryBytes
}

// Stats are the hub's gauges.
type Stats struct {
	Connections int
	Users       int
	Rooms       int
	// HistoryBytes is what all rooms' history holds (see HistoryTotalBytes).
	HistoryBytes int
}

// Stats returns the current gauges.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return Stats{Connections: len(h.members), Users: len(h.users), Rooms: len(h.rooms), HistoryBytes: h.hist.Bytes()}
}

// Register adds a connection to the hub (and so to its built-in rooms) and
// hands it the direct messages that waited for its user.
func (h *Hub) Register(m Member) {
	st := &memberState{m: m, rooms: make(map[string]*room)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.members[m.ConnID()] = st
	conns := h.users[m.UserID()]
	if conns == nil {
		conns = make(map[string]*memberState)
		h.users[m.UserID()] = conns
		h.onlineLocked(m.UserID())
	}
	conns[m.ConnID()] = st
	if box := h.mail[m.UserID()]; box != nil {
		delete(h.mail, m.UserID())
		h.mailFreed(box.msgs)
		box.deliver(m, h.cfg.Now().Add(-h.cfg.OfflineTTL))
		h.letGoLocked(m.UserID(), box.msgs, true)
	}
}

// Unregister removes a connection from every room it was in, telling the
// other members, and from the hub. Unregistering twice is harmless.
func (h *Hub) Unregister(m Member) {
	h.mu.Lock()
	st := h.members[m.ConnID()]
	if st == nil || st.m != m {
		h.mu.Unlock()
		return
	}
	left := h.takeRoomsLocked(st, nil)
	delete(h.members, m.ConnID())
	if conns := h.users[m.UserID()]; conns != nil {
		delete(conns, m.ConnID())
		if len(conns) == 0 {
			delete(h.users, m.UserID())
			h.offlineLocked(m.UserID())
		}
	}
	h.mu.Unlock()
	h.leave(m, left)
}

// Join puts m in the named room, creating it if needed, and returns the
// room's members and stream position. With since, m first receives the
// events it missed after that position (or a gap frame saying which are
// gone). Joining twice is not an error (and replays again with since).
func (h *Hub) Join(m Member, name string, since *protocol.Position) (protocol.Joined, error) {
	if err := ValidRoom(name); err != nil {
		return protocol.Joined{}, err
	}
	h.mu.Lock()
	st, err := h.stateLocked(m)
	if err != nil {
		h.mu.Unlock()
		return protocol.Joined{}, err
	}
	r := st.rooms[name]
	added := r == nil
	if added {
		if len(st.rooms) >= h.cfg.MaxRooms {
			h.mu.Unlock()
			return protocol.Joined{}, protocol.Errorf(protocol.CodeTooManyRooms, "a connection may be in at most %d rooms", h.cfg.MaxRooms)
		}
		r = h.roomLocked(name)
		st.rooms[name] = r
	}
	// The replay and the presence frames go out under the room's lock
	// only (and so does loading the room from the journal): emits to other
	// rooms go on meanwhile.
	r.pins.Add(1)
	h.mu.Unlock()
	recovery, replayed, err := r.add(h, m, h.presence(r.name, protocol.PresenceJoin, m), since)
	if err != nil {
		// Not in the room after all (only a room being loaded can fail,
		// and m was not in it).
		h.mu.Lock()
		if added && st.rooms[name] == r {
			delete(st.rooms, name)
		}
		r.pins.Add(-1)
		if h.rooms[name] == r && r.tryIdle() {
			delete(h.rooms, name)
		}
		h.mu.Unlock()
		return protocol.Joined{}, err
	}
	defer r.pins.Add(-1)
	list := r.page("", 0)
	epoch, seq := r.position()
	return protocol.Joined{Room: name, Members: list.Members, Count: list.Count, Connections: list.Connections,
		Next: list.Next, Epoch: epoch, Seq: seq, Recovery: recovery, Replayed: replayed}, nil
}

// Leave takes m out of the named room.
func (h *Hub) Leave(m Member, name string) error {
	if err := ValidRoom(name); err != nil {
		return err
	}
	h.mu.Lock()
	st, err := h.stateLocked(m)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	if st.rooms[name] == nil {
		h.mu.Unlock()
		return protocol.Errorf(protocol.CodeNotMember, "you are not in room %q", name)
	}
	left := h.takeRoomsLocked(st, []string{name})
	h.mu.Unlock()
	h.leave(m, left)
	return nil
}

// roomLocked returns the named room, created if needed.
func (h *Hub) roomLocked(name string) *room {
	r := h.rooms[name]
	if r == nil {
		r = newRoom(name, h.cfg.Now(), h.hist, h.journal != nil)
		h.rooms[name] = r
	}
	return r
}

// takeRoomsLocked takes the named rooms (all when names is nil) off st's
// list and pins them for leave.
func (h *Hub) takeRoomsLocked(st *memberState, names []string) []*room {
	if names == nil {
		for name := range st.rooms {
			names = append(names, name)
		}
	}
	left := make([]*room, 0, len(names))
	for _, name := range names {
		r := st.rooms[name]
		delete(st.rooms, name)
		r.pins.Add(1)
		left = append(left, r)
	}
	return left
}

// leave takes m out of rooms taken by takeRoomsLocked, telling the others
// under each room's lock only, then ends the rooms left idle.
func (h *Hub) leave(m Member, rooms []*room) {
	for _, r := range rooms {
		r.remove(h, m, h.presence(r.name, protocol.PresenceLeave, m))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range rooms {
		r.pins.Add(-1)
		if h.rooms[r.name] == r && r.tryIdle() {
			delete(h.rooms, r.name)
		}
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

// Members lists the users in a room m is in, a page at a time: up to
// limit (DefaultMembersPage when 0, MaxMembersPage at most) after the user
// id after, by id.
func (h *Hub) Members(m Member, name, after string, limit int) (protocol.RoomMembers, error) {
	r, err := h.pinMemberRoom(m, name)
	if err != nil {
		return protocol.RoomMembers{}, err
	}
	defer r.pins.Add(-1)
	return r.page(after, limit), nil
}

// pinMemberRoom returns the named room, pinned, if m is in it. The caller
// uses the room without the hub's lock (a room's lock may wait for the
// journal) and unpins it after.
func (h *Hub) pinMemberRoom(m Member, name string) (*room, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r, err := h.memberRoomLocked(m, name)
	if err != nil {
		return nil, err
	}
	r.pins.Add(1)
	return r, nil
}

// CheckMember returns nil when m is in the named room, else an error with
// code invalid_room or not_member.
func (h *Hub) CheckMember(m Member, name string) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, err := h.memberRoomLocked(m, name)
	return err
}

// memberRoomLocked returns the named room if m is in it, else an error with
// code invalid_room or not_member.
func (h *Hub) memberRoomLocked(m Member, name string) (*room, error) {
	if err := ValidRoom(name); err != nil {
		return nil, err
	}
	st, err := h.stateLocked(m)
	if err != nil {
		return nil, err
	}
	if r := st.rooms[name]; r != nil {
		return r, nil
	}
	// The same answer whether or not the room exists: a non-member learns
	// nothing of it.
	return nil, protocol.Errorf(protocol.CodeNotMember, "you are not in room %q", name)
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
