// Package rooms is ferry's realtime core: connections as members, named rooms,
// presence and the fan-out of events. It knows nothing of WebSocket: the
// transport hands it Members and receives encoded Messages to write.
package rooms

import (
	"sync"
)

// Member is one connection as the hub sees it.
type Member interface {
	// ConnID is the connection's id; the member is alone in room "conn:<id>".
	ConnID() string
	// UserID is the user's id; all of a user's connections share "user:<id>".
	UserID() string
	// UserName is the display name.
	UserName() string
	// Deliver queues m for writing and returns at once; false means the member
	// is gone or too slow and the message was not queued. It must not block:
	// the hub calls it while holding a room's lock.
	Deliver(m *Message) bool
	// CatchUp is Deliver for messages the member missed: a room's history
	// replayed on join, direct messages that waited for it. They are queued
	// whatever the member's send-queue limit, which is there for live
	// traffic a client does not read: catch-up is bounded by the history and
	// mailbox limits, and shares their memory.
	CatchUp(m *Message) bool
}

// Message is one frame, encoded once and shared by every recipient.
type Message struct {
	// JSON is the frame as sent.
	JSON []byte
	// Sender is the connection that caused the message ("" for the server).
	Sender string

	once   sync.Once
	framed []byte
}

// NewMessage wraps an encoded frame.
func NewMessage(json []byte, sender string) *Message {
	return &Message{JSON: json, Sender: sender}
}

// Framed returns the message as the transport writes it, computing it with
// frame on first use only, so a broadcast to a thousand members is framed once.
func (m *Message) Framed(frame func([]byte) []byte) []byte {
	m.once.Do(func() { m.framed = frame(m.JSON) })
	return m.framed
}
