// Package protocol is ferry's wire vocabulary, shared by the server and the Go
// client: frame types, the JSON shapes of frames, error codes, close codes and
// the binary chunk header. docs/protocol.md is its human-readable form.
package protocol

import (
	"encoding/json"
)

// Version is the protocol version the welcome frame announces.
const Version = 1

// Frame types (the "t" field).
const (
	TypeWelcome  = "welcome"
	TypeAck      = "ack"
	TypeError    = "error"
	TypeEvent    = "event"
	TypePresence = "presence"
	TypePing     = "ping"
	TypePong     = "pong"
	TypeJoin     = "join"
	TypeLeave    = "leave"
	TypeRooms    = "rooms"
	TypeMembers  = "members"
	TypeEmit     = "emit"

	TypeUploadOpen     = "upload.open"
	TypeUploadChunk    = "upload.chunk"
	TypeUploadStatus   = "upload.status"
	TypeUploadCancel   = "upload.cancel"
	TypeUploadFinish   = "upload.finish"
	TypeUploadProgress = "upload.progress"
	TypeUploadDone     = "upload.done"
	TypeFileLink       = "file.link"
	TypeFiles          = "files"

	TypeGap      = "gap"
	TypeReceived = "received"
	TypeReceipt  = "receipt"
	TypeReceipts = "receipts"
	TypeInvite   = "invite"
)

// Position is a place in a room's stream: the stream's epoch and the
// sequence number of the last event seen.
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// Request is any client frame. Which fields matter depends on T; the decoder
// keeps Data raw so that event payloads pass through untouched.
type Request struct {
	T          string          `json:"t"`
	ID         uint64          `json:"id,omitempty"`
	Room       string          `json:"room,omitempty"`
	User       string          `json:"user,omitempty"`
	Conn       string          `json:"conn,omitempty"`
	Event      string          `json:"event,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	ExceptSelf bool            `json:"except_self,omitempty"`
	TS         json.RawMessage `json:"ts,omitempty"`
	// MsgID is the client's own id for an emit: resending it does not
	// publish twice.
	MsgID string `json:"msg_id,omitempty"`
	// Receipt asks recipients to confirm reception.
	Receipt bool `json:"receipt,omitempty"`
	// Since asks a join to replay what was missed after this position.
	Since *Position `json:"since,omitempty"`
	// Seq names an event in received and receipts.
	Seq uint64 `json:"seq,omitempty"`
	// After and Limit page a members listing: the users after this id,
	// at most Limit of them.
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
	// Before pages a files listing: the files older than this cursor,
	// the Next of the previous page.
	Before string `json:"before,omitempty"`
	// Token, on join, is a room token: it grants the room to a user whose
	// connection token does not (see docs/protocol.md, "Who may join").
	Token string `json:"token,omitempty"`

	// Upload fields.
	Upload    string `json:"upload,omitempty"`
	Offset    int64  `json:"offset,omitempty"`
	Name      string `json:"name,omitempty"`
	Size      int64  `json:"size,omitempty"`
	Type      string `json:"type,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	ChunkSize int    `json:"chunk_size,omitempty"`
	Resume    string `json:"resume,omitempty"`
	// SHA256Later, on upload.open, says the client gives the SHA-256 with
	// upload.finish once it has sent the last byte.
	SHA256Later bool `json:"sha256_later,omitempty"`
	// CRC32CLater, on upload.open, says the client gives the file's CRC32C
	// (CRC32C, on upload.finish: 8 hex digits) instead.
	CRC32CLater bool   `json:"crc32c_later,omitempty"`
	CRC32C      string `json:"crc32c,omitempty"`
	File        string `json:"file,omitempty"`
}

// From names the sender of an event.
type From struct {
	Conn string `json:"conn"`
	User string `json:"user"`
	Name string `json:"name"`
}

// Event is a frame of type "event".
type Event struct {
	T     string          `json:"t"`
	Room  string          `json:"room"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	From  From            `json:"from"`
	TS    int64           `json:"ts"`
	// Seq and Epoch place the event in its room's (or user's) stream.
	Seq   uint64 `json:"seq,omitempty"`
	Epoch string `json:"epoch,omitempty"`
	// MsgID is the sender's id for the event, if it gave one.
	MsgID string `json:"msg_id,omitempty"`
	// Receipt asks the recipient to answer with a received frame.
	Receipt bool `json:"receipt,omitempty"`
}

// Gap tells a client that events it asked for are gone: Reason "history"
// (older than what the room keeps: From to To are lost) or "epoch" (the
// room's history was lost entirely, as after a server restart).
type Gap struct {
	T      string `json:"t"`
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	Reason string `json:"reason"`
	From   uint64 `json:"from,omitempty"`
	To     uint64 `json:"to,omitempty"`
}

// Receipt tells a sender that one more user received its event.
type Receipt struct {
	T     string `json:"t"`
	Room  string `json:"room"`
	Seq   uint64 `json:"seq"`
	User  string `json:"user"`
	Name  string `json:"name"`
	Conn  string `json:"conn"`
	Count int    `json:"count"`
}

// ReceiptUser is one user that received an event.
type ReceiptUser struct {
	User string `json:"user"`
	Name string `json:"name"`
	At   int64  `json:"at"`
}

// Receipts is the ack data of receipts.
type Receipts struct {
	Room  string        `json:"room"`
	Seq   uint64        `json:"seq"`
	Count int           `json:"count"`
	Users []ReceiptUser `json:"users"`
}

// Joined is the ack data of join.
type Joined struct {
	Room    string   `json:"room"`
	Members []Member `json:"members"`
	// Count, Connections and Next as in RoomMembers: Members is the
	// first page.
	Count       int    `json:"count"`
	Connections int    `json:"connections"`
	Next        string `json:"next,omitempty"`
	// Epoch and Seq are the room's stream position now.
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
	// Recovery answers a join with since: "ok" (every missed event was
	// replayed before this ack), "history" or "epoch" (see Gap).
	Recovery string `json:"recovery,omitempty"`
	Replayed int    `json:"replayed,omitempty"`
	// Pass, for a room joined with a token (a private room's invite, a
	// room token), is the token to send with later joins of the room, as
	// after a reconnection.
	Pass string `json:"pass,omitempty"`
}

// Invited answers an invite request: a private room and an invite to it.
type Invited struct {
	Room   string `json:"room"`
	Invite string `json:"invite"`
	// Expires is when the invite ends, in Unix milliseconds.
	Expires int64 `json:"expires"`
}

// PrivatePrefix starts the names of private rooms, which need an invite
// without an auth secret.
const PrivatePrefix = "private:"

// Presence is a frame of type "presence".
type Presence struct {
	T      string `json:"t"`
	Room   string `json:"room"`
	Action string `json:"action"`
	User   string `json:"user,omitempty"`
	Name   string `json:"name,omitempty"`
	Conn   string `json:"conn,omitempty"`
	// Connections is, on join and leave, how many connections the user
	// now has in the room; on count, how many the room has.
	Connections int `json:"connections"`
	// Users, on count, is how many users the room has.
	Users int `json:"users,omitempty"`
}

// Presence actions. A room with more users than the server announces one
// by one sends count instead, at most once a second, when its numbers
// changed.
const (
	PresenceJoin  = "join"
	PresenceLeave = "leave"
	PresenceCount = "count"
)

// Limits are announced in the welcome frame.
type Limits struct {
	MaxFrame    int   `json:"max_frame"`
	MaxRooms    int   `json:"max_rooms"`
	Rate        int   `json:"rate"`
	RateBurst   int   `json:"rate_burst"`
	MaxChunk    int   `json:"max_chunk"`
	MaxFileSize int64 `json:"max_file_size"`
	MaxUploads  int   `json:"max_uploads"`
}

// Welcome is the first frame on every connection.
type Welcome struct {
	T              string `json:"t"`
	V              int    `json:"v"`
	Conn           string `json:"conn"`
	User           string `json:"user"`
	Name           string `json:"name"`
	Token          string `json:"token,omitempty"`
	PingIntervalMS int64  `json:"ping_interval_ms"`
	PingTimeoutMS  int64  `json:"ping_timeout_ms"`
	Limits         Limits `json:"limits"`
}

// Ack answers a request that had an id.
type Ack struct {
	T    string `json:"t"`
	ID   uint64 `json:"id"`
	Data any    `json:"data,omitempty"`
}

// ErrorFrame reports a failed request or a bad frame.
type ErrorFrame struct {
	T       string `json:"t"`
	ID      uint64 `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Upload  string `json:"upload,omitempty"`
	Offset  *int64 `json:"offset,omitempty"`
	// RetryAfterMS comes with busy: when to try again.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// Pong answers a ping.
type Pong struct {
	T        string          `json:"t"`
	TS       json.RawMessage `json:"ts,omitempty"`
	ServerTS int64           `json:"server_ts"`
}

// Member is one user in a room listing.
type Member struct {
	User        string `json:"user"`
	Name        string `json:"name"`
	Connections int    `json:"connections"`
}

// RoomMembers is the ack data of join and members.
type RoomMembers struct {
	Room    string   `json:"room"`
	Members []Member `json:"members"`
	// Count and Connections are the room's users and connections, all of
	// them; Members is one page, by user id, and Next, when set, the
	// After of the next page.
	Count       int    `json:"count"`
	Connections int    `json:"connections"`
	Next        string `json:"next,omitempty"`
}

// Pages of members listings.
const (
	DefaultMembersPage = 100
	MaxMembersPage     = 1000
)

// RoomList is the ack data of rooms.
type RoomList struct {
	Rooms []string `json:"rooms"`
}

// Delivered is the ack data of emit.
type Delivered struct {
	// Delivered counts the connections the event was queued for.
	Delivered int    `json:"delivered"`
	Seq       uint64 `json:"seq,omitempty"`
	Epoch     string `json:"epoch,omitempty"`
	// Queued is set when the target user had no connection: the event waits.
	Queued bool `json:"queued,omitempty"`
	// Duplicate is set when msg_id was seen before: nothing was published
	// again and the rest of this ack is the first one's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// UploadProgress reports how far an upload got: Offset is the durable
// offset (stored), Received how many bytes the server holds (stored or in
// its part buffers): where a resume would continue.
type UploadProgress struct {
	T        string `json:"t"`
	Upload   string `json:"upload"`
	Offset   int64  `json:"offset"`
	Received int64  `json:"received"`
}

// UploadDone reports a finished upload to its uploader.
type UploadDone struct {
	T      string `json:"t"`
	Upload string `json:"upload"`
	File   File   `json:"file"`
}
