package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/gorilla/websocket"
)

// Servers a fan-out can measure. Besides ferry, the generator speaks just
// enough of a peer's protocol to run the same load against it, so that the
// figures compare servers, not load generators.
const (
	PeerFerry = "ferry"
	// PeerCentrifugo is Centrifugo (v4 and later) with its JSON protocol,
	// run with anonymous clients allowed to subscribe and publish (see
	// docs/benchmarks.md). Rooms are channels.
	PeerCentrifugo = "centrifugo"
)

// Peers lists the servers Fanout can measure.
var Peers = []string{PeerFerry, PeerCentrifugo}

// dialect is the part of a fan-out that depends on the server's protocol.
type dialect interface {
	// joinRaw makes a member's connection, just past the WebSocket
	// handshake and still in blocking mode, a member of room.
	joinRaw(c *rawConn, room string) error
	// dialPublisher opens a publisher's connection, ready to publish to room.
	dialPublisher(ctx context.Context, d *websocket.Dialer, target, name, room string) (*websocket.Conn, error)
	// appendPublish appends the text frame that publishes event k, whose
	// data data appends.
	appendPublish(b []byte, room string, k int64, data func([]byte) []byte) []byte
	// isError reports whether a frame sent to a publisher refuses something.
	isError(frame []byte) bool
	// answer returns the text frame a member sends back on receiving
	// payload, or nil.
	answer(payload []byte) []byte
}

func newDialect(peer string) (dialect, error) {
	switch peer {
	case "", PeerFerry:
		return ferryDialect{}, nil
	case PeerCentrifugo:
		return centrifugoDialect{}, nil
	}
	return nil, fmt.Errorf("unknown peer %q (known: %v)", peer, Peers)
}

// ferryDialect is ferry's own protocol (docs/protocol.md).
type ferryDialect struct{}

func (ferryDialect) joinRaw(c *rawConn, room string) error {
	var w protocol.Welcome
	if err := c.readJSON(&w); err != nil {
		return fmt.Errorf("welcome: %w", err)
	}
	if w.T != protocol.TypeWelcome {
		return fmt.Errorf("first frame is %q, want %q", w.T, protocol.TypeWelcome)
	}
	if err := c.request(1, protocol.Request{T: protocol.TypeJoin, ID: 1, Room: room}); err != nil {
		return fmt.Errorf("join %q: %w", room, err)
	}
	return nil
}

func (ferryDialect) dialPublisher(ctx context.Context, d *websocket.Dialer, target, name, room string) (*websocket.Conn, error) {
	c, _, err := dial(ctx, d, target, name)
	if err != nil {
		return nil, err
	}
	if err := join(c, room); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// appendPublish builds an emit without id (no ack) and with except_self, so
// that publishers do not receive their own events.
func (ferryDialect) appendPublish(b []byte, room string, _ int64, data func([]byte) []byte) []byte {
	b = append(b, `{"t":"emit","room":`...)
	b = strconv.AppendQuote(b, room)
	b = append(b, `,"event":"bench","except_self":true,"data":`...)
	return append(data(b), '}')
}

var ferryErrorType = []byte(`"t":"error"`)

func (ferryDialect) isError(frame []byte) bool { return bytes.Contains(frame, ferryErrorType) }

func (ferryDialect) answer([]byte) []byte { return nil }

// centrifugoDialect is Centrifugo's bidirectional JSON protocol: commands
// with an id get a reply with that id; the server's pushes carry no id; a
// frame may hold several messages, one per line; the server's ping is an
// empty object, answered with one.
type centrifugoDialect struct{}

// centrifugoReply is a reply to a command, as far as the bench reads it.
type centrifugoReply struct {
	ID    uint64 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (centrifugoReply) from(frame []byte, id uint64) (ok bool, err error) {
	for line := range bytes.SplitSeq(frame, []byte("\n")) {
		var r centrifugoReply
		if json.Unmarshal(line, &r) != nil || r.ID != id {
			continue
		}
		if r.Error != nil {
			return true, fmt.Errorf("centrifugo error %d: %s", r.Error.Code, r.Error.Message)
		}
		return true, nil
	}
	return false, nil
}

// The commands that start a connection: connect, then (for members)
// subscribe.
const (
	centrifugoConnect   = `{"id":1,"connect":{"name":"ferry-bench"}}`
	centrifugoSubscribe = `{"id":2,"subscribe":{"channel":%q}}`
)

func (centrifugoDialect) joinRaw(c *rawConn, room string) error {
	cmds := []string{centrifugoConnect, fmt.Sprintf(centrifugoSubscribe, room)}
	for i, cmd := range cmds {
		if err := c.writeFrame(opText, []byte(cmd)); err != nil {
			return err
		}
		for {
			op, payload, err := c.readBlocking()
			if err != nil {
				return err
			}
			if op == opClose {
				return closeError(payload)
			}
			if op != opText {
				continue
			}
			if ok, err := (centrifugoReply{}).from(payload, uint64(i+1)); ok {
				if err != nil {
					return fmt.Errorf("%s: %w", cmd, err)
				}
				break
			}
		}
	}
	return nil
}

func (centrifugoDialect) dialPublisher(ctx context.Context, d *websocket.Dialer, target, name, _ string) (*websocket.Conn, error) {
	u := target + "?name=" + url.QueryEscape(name)
	c, _, err := d.DialContext(ctx, u, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	deadline := time.Now().Add(handshakeTimeout)
	_ = c.SetWriteDeadline(deadline)
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	if err := c.WriteMessage(websocket.TextMessage, []byte(centrifugoConnect)); err != nil {
		c.Close()
		return nil, err
	}
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("connect: %w", err)
		}
		if ok, err := (centrifugoReply{}).from(b, 1); ok {
			if err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
}

// appendPublish builds a publish command. Centrifugo replies to every one;
// the publisher's reader takes the replies. The publisher is not
// subscribed, so it does not receive its own events.
func (centrifugoDialect) appendPublish(b []byte, room string, k int64, data func([]byte) []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, k+10, 10)
	b = append(b, `,"publish":{"channel":`...)
	b = strconv.AppendQuote(b, room)
	b = append(b, `,"data":`...)
	return append(data(b), "}}"...)
}

var centrifugoErrorKey = []byte(`"error":`)

func (centrifugoDialect) isError(frame []byte) bool {
	return bytes.Contains(frame, centrifugoErrorKey)
}

var centrifugoPing = []byte("{}")

func (centrifugoDialect) answer(payload []byte) []byte {
	for line := range bytes.SplitSeq(payload, []byte("\n")) {
		if bytes.Equal(line, centrifugoPing) {
			return centrifugoPing
		}
	}
	return nil
}
