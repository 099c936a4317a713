package rooms

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// room is a named room. Its lock is held while delivering, so every member
// sees a room's messages in the same order; Deliver never blocks, so holding
// it is short. With a Journal it is also held while the room's stream is
// loaded or an event appended: the hub never waits for a room's lock while
// holding its own (see tryIdle), so a slow journal stalls one room only.
type room struct {
	name string

	// pins counts the hub's operations that found the room under the hub's
	// lock and act on it after: a pinned room is not idle, so that the
	// sweep or a last leave does not end it in between.
	pins atomic.Int32
	// counted: the room's numbers changed and it does not announce them
	// one by one; the hub's loop sends a count (see presence.go).
	counted atomic.Bool

	mu      sync.Mutex
	members []Member          // dense, for a fast fan-out loop
	index   map[string]int    // connection id → position in members
	users   map[string]*count // user id → connections in this room, on all nodes
	st      stream
	// loaded is false until st is restored from the journal: a room is
	// created under the hub's lock, which must not wait for the journal.
	// Without a journal a room is loaded from birth.
	loaded bool
	// jpos is the journal's position of the room's newest record the
	// room has (see SharedJournal), 0 if none.
	jpos uint64
	// durable means the room's history lives in the journal, so the room
	// may leave memory once nobody is in it.
	durable bool
	// remote is the other nodes' connections in the room (see roster.go).
	remote remoteRoom
}

// count is a user's connections in a room: n on this node, rn on others.
type count struct {
	name string
	n    int
	rn   int
}

func newRoom(name string, now time.Time, acct *histAccount, durable bool) *room {
	r := &room{name: name, index: make(map[string]int), users: make(map[string]*count), durable: durable, loaded: !durable}
	if !durable {
		r.st = newStream(now, acct)
	}
	return r
}

// add puts m in the room and tells the others with the message presence
// builds. With since, m first receives what it missed after that position,
// under the room's lock, so nothing published meanwhile comes before it.
// It fails only when the room's stream cannot be loaded from the journal.
func (r *room) add(h *Hub, m Member, presence func(int) *Message, since *protocol.Position) (recovery string, replayed int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(h); err != nil {
		return "", 0, err
	}
	if err := r.startLocked(h); err != nil {
		return "", 0, err
	}
	if since != nil {
		recovery, replayed = r.replayLocked(m, since)
	}
	if _, ok := r.index[m.ConnID()]; ok {
		return recovery, replayed, nil
	}
	r.index[m.ConnID()] = len(r.members)
	r.members = append(r.members, m)
	c := r.users[m.UserID()]
	if c == nil {
		c = &count{name: m.UserName()}
		r.users[m.UserID()] = c
	}
	c.n++
	r.shareLocked(h, m.UserID(), m.UserName(), c.n)
	r.presenceLocked(h, presence, c.n+c.rn, m.ConnID())
	return recovery, replayed, nil
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

// publish numbers the message build makes, journals it, keeps it in the
// history and delivers it to every member but except. user is the sending
// user, msgID its id for the event ("" if none). track, if not nil, is the
// sender for whom the event is tracked for receipts once it has its
// position for good, before any member sees it.
//
// The journal's append is synchronous and comes before the fan-out: once a
// member has seen a seq, the event survives a crash, so a restarted room
// never gives that seq to another event. It costs one journal round trip
// per event under the room's lock (not per member); docs/architecture.md
// ("Durable state") has the numbers and the alternative. With a
// SharedJournal another node may have taken the position: the room catches
// up and tries the next one; dup is then set if that node had published
// this very event (the same user and msgID). And an append whose outcome is
// unknown is made again, as it was, for up to unknownRetry times
// JournalTimeout: the journal stores it once (see retriesLocked).
func (r *room) publish(h *Hub, user, msgID string, build func(seq uint64, epoch string) *Message, track *protocol.From, except string) (d protocol.Delivered, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(h); err != nil {
		return d, err
	}
	_, shared := h.journal.(SharedJournal)
	var (
		msg *Message
		rec Record
		// unknown: rec's last append may or may not have been stored (a
		// NATS leader changing); it is made again as it was.
		unknown bool
	)
	for start := time.Now(); ; {
		if !unknown {
			if msgID != "" && h.cfg.Journal != nil {
				// Applied from the journal's feed since the emit began.
				if d, ok := h.dedup.elsewhere(user, msgID); ok {
					d.Duplicate = true
					return d, nil
				}
			}
			seq, epoch := r.st.seq+1, r.st.epoch
			msg = build(seq, epoch)
			rec = Record{Epoch: epoch, Seq: seq, At: h.cfg.Now(), User: user, Conn: msg.Sender, MsgID: msgID, Receipt: track != nil}
		}
		keep := len(msg.JSON) <= h.maxKeep
		if h.journal != nil {
			if keep {
				rec.JSON = msg.JSON
			}
			err := r.appendLocked(h, rec)
			switch {
			case err == nil:
			case errors.Is(err, ErrJournalConflict) && (unknown || time.Since(start) < h.cfg.JournalTimeout):
				// After an unknown outcome, whatever the time: the refusal
				// may be of the record's own first append, found by the
				// catch-up.
				var mine *Record
				if unknown {
					mine = &rec
				}
				dup, ours, err := r.catchUpLocked(h, h.journal.(SharedJournal), user, msgID, mine)
				if err != nil {
					return d, err
				}
				if dup != nil {
					return *dup, nil
				}
				if !ours {
					unknown = false
					continue
				}
			case errors.Is(err, errAppendUnknown) && shared && time.Since(start) < unknownRetry*h.cfg.JournalTimeout:
				unknown = true
				time.Sleep(unknownPause)
				continue
			case errors.Is(err, errAppendUnknown):
				return d, r.abandonLocked(h)
			default: // lost the race to other nodes for JournalTimeout
				return d, journalError("room %q is busy with other nodes' events; try again", r.name)
			}
		}
		if track != nil {
			// Before any member sees it, so before any can confirm it.
			h.track.add(trackKey{r.name, rec.Epoch, rec.Seq}, *track, rec.At.Add(h.cfg.HistoryTTL), true)
		}
		r.st.seq = rec.Seq
		if keep {
			r.st.append(&entry{seq: rec.Seq, msg: msg, at: rec.At, user: user}, h.cfg.HistorySize, h.cfg.HistoryBytes)
		} else {
			// Not kept, and neither is what came before: a replay cannot
			// step over the event, it has a gap.
			r.st.clear()
			r.st.last = rec.At
		}
		return protocol.Delivered{Seq: rec.Seq, Epoch: rec.Epoch, Delivered: r.deliverLocked(msg, except)}, nil
	}
}

// position returns the stream's epoch and last sequence number.
func (r *room) position() (string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.epoch, r.st.seq
}

// tryExpire drops history older than before and reports whether the room
// is now idle and has let its history go (see tryIdle), so it can go. A
// room in use is left for the next sweep.
func (r *room) tryExpire(before time.Time) bool {
	if !r.mu.TryLock() {
		return false
	}
	defer r.mu.Unlock()
	if r.loaded {
		r.st.expire(before)
	}
	return r.endIfIdleLocked()
}

// tryIdle reports whether the room has no members and no pins, and either
// no history or a journal keeping it; if so, the room lets go of the
// history it holds in memory, and the caller takes it out of the hub. The
// caller holds the hub's lock, so the room's lock is only tried: whoever
// holds it (a join loading the stream, an emit waiting for the journal)
// pinned the room, which is then not idle anyway, and the hub does not wait
// on a journal.
func (r *room) tryIdle() bool {
	if !r.mu.TryLock() {
		return false
	}
	defer r.mu.Unlock()
	return r.endIfIdleLocked()
}

func (r *room) endIfIdleLocked() bool {
	if len(r.members) > 0 || r.pins.Load() > 0 || (!r.durable && (r.st.n > 0 || r.remote.entries > 0)) {
		return false
	}
	r.st.clear()
	r.loaded, r.jpos = !r.durable, 0
	// Users on other nodes keep the room (its numbers, not its history).
	return r.remote.entries == 0
}

// remove takes m out of the room and tells the others.
func (r *room) remove(h *Hub, m Member, presence func(int) *Message) {
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
		r.shareLocked(h, m.UserID(), m.UserName(), c.n)
		n = c.n + c.rn
		if n <= 0 {
			delete(r.users, m.UserID())
		}
	}
	r.presenceLocked(h, presence, n, m.ConnID())
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
