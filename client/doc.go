// Package client is the Go client of a ferry server (docs/protocol.md).
//
// Dial connects and returns a Client that stays connected: when the
// connection drops it reconnects with exponential backoff and jitter (1s
// doubling to at most 5s, randomized by ±50%, forever by default), presents
// the same token so the user id survives, and joins its rooms again before
// requests go on. Close codes from 4500 to 4999 (protocol.Reconnectable)
// end it for good. New and Connect split Dial in two, for handlers that must
// see the very first frames (direct messages that waited for the user).
//
// Requests (Join, JoinFrom, Leave, Rooms, Members, Emit, EmitTo, Publish,
// Receipts, FileLink, Ping) take a context and wait for the server's answer.
// While the client reconnects they wait for it, within their context. An
// error frame comes back as a *protocol.Error:
//
//	var perr *protocol.Error
//	if errors.As(err, &perr) && perr.Code == protocol.CodeNotMember { ... }
//	if errors.Is(err, &protocol.Error{Code: protocol.CodeNotMember}) { ... }
//
// A connection lost before the answer comes back as ErrConnectionLost (the
// request may or may not have been carried out; retrying is up to the
// caller), except for emits, and once the client is done every request fails
// with Client.Err. Send emits without waiting for an answer.
//
// # Delivery
//
// The client keeps, per joined room, its position in the room's stream
// (Position): the epoch and seq of the last event handled. It drops any
// event whose seq is not above the last one of the same epoch, and joins
// again after a reconnection from that position, so that the server replays
// exactly what was missed: the handlers get every event of a room once, in
// order. Events the server no longer keeps are reported, never skipped
// silently: a gap (OnGap) comes before the events still kept, and OnJoined
// handlers get each join's answer with its recovery. JoinFrom resumes from a position
// saved earlier, even by another process.
//
// Emit, EmitTo and Publish give every event a message id and, when the
// connection drops before the ack, send it again with the same id after the
// reconnection, until it is acked or the context ends: the server publishes
// an id once, so publishing is exactly once within its dedup window (its
// history TTL, 10 minutes by default, as long as it does not restart).
//
// Events sent WithReceipt ask recipients to confirm them: the client
// confirms every such event once its handlers have returned, and the
// sender's OnReceipt handlers hear of each user who did.
//
// # Files
//
// Upload sends a file to a room chunk by chunk within the server's window,
// hashing it as it goes, resumes it across reconnections, and returns the
// File once the server has stored, verified and announced it (an event
// named FileEvent whose data is the File). With UploadOptions.KeepOnCancel
// and Resume, an upload outlives the process that started it: a later run
// sends only what the server does not hold. Download fetches a file and
// checks it against its SHA-256.
//
// # Handlers
//
// Incoming frames reach handlers registered with On, OnAny, OnPresence,
// OnGap, OnReceipt, OnJoined and OnError; connection changes reach
// OnLifecycle handlers under the names Socket.IO uses: connect,
// connect_error, disconnect, reconnect_attempt, reconnect and
// reconnect_failed. All handlers run on one goroutine, in the order things
// happened.
//
// The client pings the server every ping interval announced in the welcome
// frame and takes a server silent for the ping interval plus the ping timeout
// for gone: it closes the connection and reconnects.
package client
