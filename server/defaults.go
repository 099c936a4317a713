package server

import (
	"time"

	"github.com/ferryhq/ferry/transfer"
)

// Defaults of Config, in one place: New applies them to zero fields, and
// the flags of "ferry serve" start from them.
const (
	// DefaultPingInterval is how often the server pings a connection;
	// DefaultPingTimeout, how long past a ping a silent one is kept. The
	// interval is longer than the timeout, so one ping is out at a time.
	DefaultPingInterval = 25 * time.Second
	DefaultPingTimeout  = 20 * time.Second
	// DefaultWriteTimeout is the deadline of every write to a client.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultWriteDelay is how often, under load, room traffic is written:
	// several frames per system call.
	DefaultWriteDelay = 12 * time.Millisecond
	// DefaultMaxFrame is the largest text frame a client may send.
	DefaultMaxFrame = 1 << 20
	// DefaultMaxQueue is how many bytes may wait for a client before it
	// is dropped as slow.
	DefaultMaxQueue = 4 << 20
	// DefaultRate and DefaultRateBurst bound the requests of one
	// connection (per second, and in a burst).
	DefaultRate      = 100
	DefaultRateBurst = 200
	// DefaultMaxRooms is how many named rooms one connection may be in.
	DefaultMaxRooms = 100
	// DefaultMaxUploads is how many uploads one connection may run at once:
	// the transfer manager's own limit.
	DefaultMaxUploads = transfer.DefaultMaxUploads

	// The connection caps: in all, per client address, per user.
	DefaultMaxConns        = 10_000
	DefaultMaxConnsPerIP   = 500
	DefaultMaxConnsPerUser = 64

	// DefaultMaxTokenTTL is the longest validity a token may have;
	// DefaultAnonTTL, how long an anonymous user keeps its id without
	// connecting; DefaultInviteTTL, how long an invite stays valid.
	DefaultMaxTokenTTL = 30 * 24 * time.Hour
	DefaultAnonTTL     = 30 * 24 * time.Hour
	DefaultInviteTTL   = 7 * 24 * time.Hour
	// DefaultLinkTTL is how long a signed download link is valid.
	DefaultLinkTTL = 24 * time.Hour
	// DefaultDownloadIdle cuts a download whose client reads nothing for
	// that long.
	DefaultDownloadIdle = 30 * time.Second
	// DefaultFilesPerRoom is how many files a room's listing keeps, the
	// newest; DefaultFilesBytes, how many bytes the in-memory file index
	// takes in all (about a hundred thousand files).
	DefaultFilesPerRoom = 1000
	DefaultFilesBytes   = 64 << 20
	// DefaultShutdownGrace is how long connections get to close on
	// shutdown.
	DefaultShutdownGrace = 10 * time.Second
)
