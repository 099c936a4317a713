package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/ferryhq/ferry/protocol"
)

// Router carries direct messages between hubs (ferry nodes) that share
// users: a user connected to one node gets the direct messages sent on
// another (rooms/jetstream's Router does it over NATS). The hub tells it
// where its users are, and gives it the direct messages its own
// connections cannot take; the router hands what other hubs send to this
// one to Receive and HandOver.
//
// A message crosses as its event frame; the hub that delivers it numbers it
// in its own user-room epoch, so a client sees increasing seqs in each
// epoch whichever node it is connected to.
type Router interface {
	// Online says user has its first connection on this hub: from now on
	// the router takes the direct messages other hubs send user, and tells
	// the other hubs, which then hand over the messages waiting for user
	// with them (HandOver). Offline says its last connection left. Both
	// are called under the hub's lock, in order, and must not block.
	Online(user string)
	Offline(user string)
	// Send offers frame, a direct message to user, to the other hubs with
	// connections of user, and returns the first one's ack (it delivered
	// or, the user having left meanwhile, queued the message). It returns
	// an error matching ErrNoRoute when no other hub has a connection of
	// user, and a *protocol.Error when the hub that answered refused it.
	Send(ctx context.Context, user string, frame []byte) (protocol.Delivered, error)
	// Publish hands frame to the other hubs with connections of user,
	// without waiting: this hub delivered it to its own.
	Publish(user string, frame []byte)
}

// ErrNoRoute is what a Router's Send returns when no other hub has a
// connection of the user.
var ErrNoRoute = errors.New("rooms: no other hub has a connection of the user")

// routing is the hub's side of its Router.
type routing struct {
	// pending are the users another hub has now, whose mailboxes here the
	// hand-over loop forwards; at most the users with mail. The hub's lock
	// guards it.
	pending map[string]struct{}
	kick    chan struct{}
}

func newRouting() routing {
	return routing{pending: make(map[string]struct{}), kick: make(chan struct{}, 1)}
}

func (h *Hub) onlineLocked(user string) {
	if h.cfg.Router != nil {
		h.cfg.Router.Online(user)
	}
}

func (h *Hub) offlineLocked(user string) {
	if h.cfg.Router != nil {
		h.cfg.Router.Offline(user)
	}
}

// Receive takes frame, a direct message to user that another hub sent
// through the Router, and delivers it to user's connections here, numbered
// in this hub's user-room epoch. With queue, a user who has no connection
// here any more (they left meanwhile) gets it in its mailbox here, and the
// ack says queued; without (a copy of a message delivered elsewhere too),
// nothing more happens. A message with a msg_id this hub has seen from
// the same sender is not delivered again, and its ack is the first one's
// with duplicate: a message handed over again after its answer was lost,
// or resent through a third node, reaches the user once.
func (h *Hub) Receive(user string, frame []byte, queue bool) (protocol.Delivered, error) {
	var ev protocol.Event
	if err := json.Unmarshal(frame, &ev); err != nil || ev.T != protocol.TypeEvent ||
		ev.Room != UserPrefix+user || !validID(user) || ev.From.User == "" || validMsgID(ev.MsgID) != nil {
		return protocol.Delivered{}, protocol.Errorf(protocol.CodeBadFrame, "not a direct message to user:%s", user)
	}
	if ev.MsgID == "" {
		return h.receive(user, ev, queue)
	}
	d, seen, reserved := h.dedup.tryBegin(ev.From.User, ev.MsgID, h.cfg.Now())
	if seen {
		d.Duplicate = true
		return d, nil
	}
	d, err := h.receive(user, ev, queue)
	if reserved {
		// A copy not delivered (the user left) is not seen here.
		h.dedup.end(ev.From.User, ev.MsgID, d, err == nil && (queue || d.Delivered > 0))
	}
	return d, err
}

func (h *Hub) receive(user string, ev protocol.Event, queue bool) (protocol.Delivered, error) {
	build := func(seq uint64) *Message {
		ev.Seq, ev.Epoch = seq, h.epoch
		b, err := json.Marshal(ev)
		if err != nil { // it was just decoded
			h.cfg.Log.Error("encode a routed direct message", "err", err)
		}
		return NewMessage(b, "")
	}
	if !queue {
		h.mu.RLock()
		d, _, err := h.deliverDirectLocked(UserPrefix, user, "", build)
		h.mu.RUnlock()
		return d, err
	}
	return h.direct(UserPrefix, user, ev.From.User, ev.MsgID, "", true, build)
}

// routeSend offers a direct message to user, who has no connection here,
// to the other hubs; ok is false when none has user.
func (h *Hub) routeSend(user string, build func(seq uint64) *Message) (d protocol.Delivered, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	// Unnumbered: the hub that delivers it numbers it.
	d, err = h.cfg.Router.Send(ctx, user, build(0).JSON)
	if errors.Is(err, ErrNoRoute) {
		return protocol.Delivered{}, false, nil
	}
	var perr *protocol.Error
	if err != nil && !errors.As(err, &perr) {
		h.cfg.Log.Warn("route a direct message", "user", user, "err", err)
		err = journalError("user:%s is connected to another node, and the message could not be handed to it; try again", user)
	}
	return d, true, err
}

// HandOver says another hub has a connection of user now: the messages
// waiting for user here go to it (by the hand-over loop of Run), unless
// user has a connection here too (which got them).
func (h *Hub) HandOver(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg.Router == nil || h.mail[user] == nil || len(h.users[user]) > 0 {
		return
	}
	h.recheckLocked(user)
}

// recheckLocked marks user's mailbox for the hand-over loop. A message
// just queued because no hub had user is marked too: user may have
// connected elsewhere between the Router's answer and the queueing, and
// been announced before there was anything to hand over; by now its
// hub's subscription is in place, so the loop's try finds it.
func (h *Hub) recheckLocked(user string) {
	h.route.pending[user] = struct{}{}
	select {
	case h.route.kick <- struct{}{}:
	default:
	}
}

// handOverLoop forwards mailboxes to the hubs that have their users, until
// ctx ends: first every mailbox loaded (their users may be connected
// elsewhere), then those HandOver names.
func (h *Hub) handOverLoop(ctx context.Context) {
	h.mu.Lock()
	for user := range h.mail {
		h.route.pending[user] = struct{}{}
	}
	h.mu.Unlock()
	for {
		h.mu.Lock()
		users := h.route.pending
		h.route.pending = make(map[string]struct{})
		h.mu.Unlock()
		for user := range users {
			if ctx.Err() != nil {
				return
			}
			h.handOver(ctx, user)
		}
		select {
		case <-ctx.Done():
			return
		case <-h.route.kick:
		}
	}
}

// handOver sends user's waiting messages, oldest first, to the hub that
// has user, each taken from the mailbox (and the store) once that hub
// acked it. It stops at the first that does not go (nobody has user any
// more, or the hub refused it): the rest wait here.
func (h *Hub) handOver(ctx context.Context, user string) {
	h.mu.RLock()
	var msgs []mailed
	if box := h.mail[user]; box != nil && len(h.users[user]) == 0 {
		msgs = slices.Clone(box.msgs)
	}
	h.mu.RUnlock()
	expired := h.cfg.Now().Add(-h.cfg.OfflineTTL)
	sent := 0
	for _, x := range msgs {
		if x.at.Before(expired) {
			continue // Sweep's
		}
		sctx, cancel := context.WithTimeout(ctx, h.cfg.JournalTimeout)
		_, err := h.cfg.Router.Send(sctx, user, x.msg.JSON)
		cancel()
		if err != nil {
			if !errors.Is(err, ErrNoRoute) {
				h.cfg.Log.Warn("hand over a direct message", "user", user, "sent", sent, "left", len(msgs)-sent, "err", err)
			}
			return
		}
		sent++
		h.mu.Lock()
		if h.removeMailedLocked(user, func(y mailed) bool { return y.msg == x.msg }) {
			h.letGoLocked(user, []mailed{x}, false)
		}
		h.mu.Unlock()
	}
}
