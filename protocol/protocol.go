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
	TypeUploadProgress = "upload.progress"
	TypeUploadDone     = "upload.done"
	TypeFileLink       = "file.link"
)

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

	// Upload fields.
	Upload    string `json:"upload,omitempty"`
	Offset    int64  `json:"offset,omitempty"`
	Name      string `json:"name,omitempty"`
	Size      int64  `json:"size,omitempty"`
	Type      string `json:"type,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	ChunkSize int    `json:"chunk_size,omitempty"`
	Resume    string `json:"resume,omitempty"`
	File      string `json:"file,omitempty"`
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
}

// Presence is a frame of type "presence".
type Presence struct {
	T           string `json:"t"`
	Room        string `json:"room"`
	Action      string `json:"action"`
	User        string `json:"user"`
	Name        string `json:"name"`
	Conn        string `json:"conn"`
	Connections int    `json:"connections"`
}

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
}

// RoomList is the ack data of rooms.
type RoomList struct {
	Rooms []string `json:"rooms"`
}

// Delivered is the ack data of emit.
type Delivered struct {
	Delivered int `json:"delivered"`
}

// UploadProgress reports a new durable offset.
type UploadProgress struct {
	T      string `json:"t"`
	Upload string `json:"upload"`
	Offset int64  `json:"offset"`
}

// UploadDone reports a finished upload to its uploader.
type UploadDone struct {
	T      string `json:"t"`
	Upload string `json:"upload"`
	File   any    `json:"file"`
}
