// Package client is the Go client of a ferry server (docs/protocol.md).
//
// Dial connects and returns a Client that stays connected: when the
// connection drops it reconnects with exponential backoff and jitter (1s
// doubling to at most 5s, randomized by ±50%, forever by default), presents
// the same token so the user id survives, and joins its rooms again before
// requests go on. Close codes from 4500 to 4999 (protocol.Reconnectable)
// end it for good.
//
// Requests (Join, Leave, Rooms, Members, Emit, EmitTo, Ping) take a context
// and wait for the server's answer. While the client reconnects they wait for
// it, within their context. An error frame comes back as a *protocol.Error:
//
//	var perr *protocol.Error
//	if errors.As(err, &perr) && perr.Code == protocol.CodeNotMember { ... }
//	if errors.Is(err, &protocol.Error{Code: protocol.CodeNotMember}) { ... }
//
// A connection lost before the answer comes back as ErrConnectionLost (the
// request may or may not have been carried out; retrying is up to the
// caller), and once the client is done every request fails with Client.Err.
// Send emits without waiting for an answer.
//
// Incoming frames reach handlers registered with On, OnAny, OnPresence and
// OnError; connection changes reach OnLifecycle handlers under the names
// Socket.IO uses: connect, connect_error, disconnect, reconnect_attempt,
// reconnect and reconnect_failed. All handlers run on one goroutine, in the
// order things happened.
//
// The client pings the server every ping interval announced in the welcome
// frame and takes a server silent for the ping interval plus the ping timeout
// for gone: it closes the connection and reconnects.
package client
