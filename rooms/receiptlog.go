package rooms

import (
	"context"

	"github.com/ferryhq/ferry/protocol"
)

// ReceiptLog keeps the receipts of named rooms' events where a restart does
// not lose them and every node sharing a journal sees them (rooms/jetstream
// keeps them in a JetStream stream). Which events ask for receipts, and
// their senders, the hub knows from the journal (Record.Receipt), so a log
// is of use only with a Journal. Direct messages' receipts stay in memory.
//
// The hub stores each confirmation it takes (Received) and reads an
// event's confirmations the first time it needs them after it restored the
// event from the journal (a restart, another node's event). Other nodes'
// confirmations reach a hub live through Hub.ApplyReceipt, from a feed of
// the log (rooms/jetstream's FollowReceipts).
type ReceiptLog interface {
	// Confirm stores that u received the event at seq of room's epoch,
	// through its connection conn.
	Confirm(ctx context.Context, room, epoch string, seq uint64, u protocol.ReceiptUser, conn string) error
	// Confirmed returns the confirmations stored for that event, in the
	// order they were stored, a bounded number of them (the log's own
	// bound per event); a user may appear more than once.
	Confirmed(ctx context.Context, room, epoch string, seq uint64) ([]protocol.ReceiptUser, error)
}

// restoreTracking tracks, for its receipts, an event of a named room that
// the hub restored from the journal rather than published; its
// confirmations are read from the ReceiptLog when first needed.
func (h *Hub) restoreTracking(room string, rec Record) {
	if !rec.Receipt {
		return
	}
	h.track.add(trackKey{room, rec.Epoch, rec.Seq}, protocol.From{User: rec.User, Conn: rec.Conn},
		rec.At.Add(h.cfg.HistoryTTL), h.cfg.Receipts == nil)
}

// loadConfirmed reads the confirmations of a tracked event from the
// ReceiptLog if the hub has not yet, outside the tracker's lock. A failed
// read is logged and tried again at the next use.
func (h *Hub) loadConfirmed(k trackKey) {
	if h.cfg.Receipts == nil || builtIn(k.room) {
		return
	}
	h.track.mu.Lock()
	e := h.track.events[k]
	need := e != nil && !e.loaded
	h.track.mu.Unlock()
	if !need {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	users, err := h.cfg.Receipts.Confirmed(ctx, k.room, k.epoch, k.seq)
	if err != nil {
		h.cfg.Log.Warn("receipts: read", "room", k.room, "seq", k.seq, "err", err)
		return
	}
	h.track.mu.Lock()
	defer h.track.mu.Unlock()
	if e = h.track.events[k]; e == nil || e.loaded {
		return
	}
	for _, u := range users {
		if _, ok := e.users[u.User]; !ok && u.User != e.from.User {
			e.users[u.User] = u
		}
	}
	e.loaded = true
}

// ApplyReceipt gives the hub a confirmation another node took (or this
// one: those are known already and ignored) of an event of a named room,
// from u's connection conn.
// If the hub tracks the event and the user is new to it, the sender's
// connection on this hub, or else the sending user's connections here, get
// a receipt frame.
func (h *Hub) ApplyReceipt(room, epoch string, seq uint64, u protocol.ReceiptUser, conn string) {
	if builtIn(room) || u.User == "" {
		return
	}
	k := trackKey{room, epoch, seq}
	// Counted after the confirmations from before the event was restored.
	h.loadConfirmed(k)
	h.confirmed(k, u, conn)
}
