package rooms

import (
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// mailbox holds direct messages for a user who has no connection.
type mailbox struct {
	msgs  []mailed
	bytes int // of the messages' JSON
}

type mailed struct {
	msg *Message
	at  time.Time
}

// queueLocked keeps msg for user; the oldest messages go when the mailbox
// is full. A message is refused when all mailboxes together would hold more
// than OfflineTotalBytes.
func (h *Hub) queueLocked(user string, msg *Message) error {
	size := len(msg.JSON)
	if size > h.cfg.OfflineBytes {
		return protocol.Errorf(protocol.CodeUnknownTarget, "user:%s is not connected, and the message is larger than the %d bytes kept for them", user, h.cfg.OfflineBytes)
	}
	if h.mailBytes+size > h.cfg.OfflineTotalBytes {
		return protocol.Errorf(protocol.CodeUnknownTarget, "user:%s is not connected and the messages waiting for users fill the server's space for them", user)
	}
	box := h.mail[user]
	if box == nil {
		if len(h.mail) >= h.cfg.OfflineUsers {
			return protocol.Errorf(protocol.CodeUnknownTarget, "user:%s is not connected and too many users have messages waiting", user)
		}
		box = &mailbox{}
		h.mail[user] = box
	}
	for len(box.msgs) > 0 && (len(box.msgs) >= h.cfg.OfflineSize || box.bytes+size > h.cfg.OfflineBytes) {
		h.mailBytes -= box.drop(1)
	}
	box.msgs = append(box.msgs, mailed{msg: msg, at: h.cfg.Now()})
	box.bytes += size
	h.mailBytes += size
	return nil
}

// drop removes the n oldest messages and returns their bytes.
func (b *mailbox) drop(n int) int {
	freed := 0
	for _, x := range b.msgs[:n] {
		freed += len(x.msg.JSON)
	}
	clear(b.msgs[:n])
	b.msgs = b.msgs[n:]
	b.bytes -= freed
	return freed
}

// deliver hands m the messages queued at or after since; older ones have
// expired and are delivered to nobody.
func (b *mailbox) deliver(m Member, since time.Time) {
	for _, x := range b.msgs {
		if !x.at.Before(since) {
			m.CatchUp(x.msg)
		}
	}
}

// expire drops messages older than before and returns the bytes freed.
func (b *mailbox) expire(before time.Time) int {
	i := 0
	for i < len(b.msgs) && b.msgs[i].at.Before(before) {
		i++
	}
	return b.drop(i)
}
