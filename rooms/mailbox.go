package rooms

import (
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// mailbox holds direct messages for a user who has no connection.
type mailbox struct {
	msgs []mailed
}

type mailed struct {
	msg *Message
	at  time.Time
}

// queueLocked keeps msg for user; the oldest message goes when the mailbox
// is full.
func (h *Hub) queueLocked(user string, msg *Message) error {
	box := h.mail[user]
	if box == nil {
		if len(h.mail) >= h.cfg.OfflineUsers {
			return protocol.Errorf(protocol.CodeUnknownTarget, "user:%s is not connected and too many users have messages waiting", user)
		}
		box = &mailbox{}
		h.mail[user] = box
	}
	if len(box.msgs) >= h.cfg.OfflineSize {
		box.msgs[0] = mailed{}
		box.msgs = box.msgs[1:]
	}
	box.msgs = append(box.msgs, mailed{msg: msg, at: h.cfg.Now()})
	return nil
}

// deliver hands m the messages queued at or after since; older ones have
// expired and are delivered to nobody.
func (b *mailbox) deliver(m Member, since time.Time) {
	for _, x := range b.msgs {
		if !x.at.Before(since) {
			m.Deliver(x.msg)
		}
	}
}

// expire drops messages older than before and reports whether the mailbox
// is empty.
func (b *mailbox) expire(before time.Time) bool {
	i := 0
	for i < len(b.msgs) && b.msgs[i].at.Before(before) {
		i++
	}
	b.msgs = b.msgs[i:]
	return len(b.msgs) == 0
}
