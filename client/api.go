package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Target says where an event goes: exactly one of Room, User and Conn.
type Target struct {
	// Room is a named room this client is in, or "user:<id>" / "conn:<id>".
	Room string
	// User sends to every connection of a user.
	User string
	// Conn sends to one connection.
	Conn string
	// ExceptSelf keeps the event from coming back to this client, even
	// when a catch-up after a reconnection replays the room's history.
	ExceptSelf bool
}

// request sends req on the current connection and returns the ack's data.
// onResult, if set, sees the answer before the caller does (see pending).
func (c *Client) request(ctx context.Context, req protocol.Request, onResult func(json.RawMessage, error)) (json.RawMessage, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	return s.request(ctx, req, onResult)
}

// Join joins a named room (creating it if needed) and returns the server's
// answer: the room's members and its stream position. The client joins it
// again after every reconnection, until Leave, and catches up then: the
// handlers get every event of the room exactly once, in order, or a gap
// (OnGap) for events the server no longer has.
func (c *Client) Join(ctx context.Context, room string) (protocol.Joined, error) {
	return c.join(ctx, room, nil, "")
}

// Invite asks for an invite to a private room: with room "", a new private
// room is made (its name is in the answer); with the name of a private room
// the client is in, another invite to it. Whoever gets the invite joins
// with JoinWith(ctx, invited.Room, invited.Invite) until it expires. Only
// servers without an auth secret make invites.
func (c *Client) Invite(ctx context.Context, room string) (protocol.Invited, error) {
	data, err := c.request(ctx, protocol.Request{T: protocol.TypeInvite, Room: room}, nil)
	if err != nil {
		return protocol.Invited{}, err
	}
	var inv protocol.Invited
	if err := json.Unmarshal(data, &inv); err != nil {
		return inv, fmt.Errorf("client: decoding the invite: %w", err)
	}
	return inv, nil
}

// Leave leaves a named room.
func (c *Client) Leave(ctx context.Context, room string) error {
	_, err := c.request(ctx, protocol.Request{T: protocol.TypeLeave, Room: room}, func(_ json.RawMessage, err error) {
		var perr *protocol.Error
		if err == nil || errors.As(err, &perr) && perr.Code == protocol.CodeNotMember {
			c.mu.Lock()
			delete(c.rooms, room)
			c.mu.Unlock()
			c.streams.forget(room)
		}
	})
	return err
}

// Rooms returns the named rooms this connection is in, as the server sees them.
func (c *Client) Rooms(ctx context.Context) ([]string, error) {
	data, err := c.request(ctx, protocol.Request{T: protocol.TypeRooms}, nil)
	if err != nil {
		return nil, err
	}
	var l protocol.RoomList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("client: decoding the rooms ack: %w", err)
	}
	return l.Rooms, nil
}

// Members lists the members of a room this client is in.
func (c *Client) Members(ctx context.Context, room string) ([]protocol.Member, error) {
	var all []protocol.Member
	after := ""
	for {
		page, err := c.MembersPage(ctx, room, after, protocol.MaxMembersPage)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Members...)
		if page.Next == "" {
			return all, nil
		}
		after = page.Next
	}
}

// MembersPage lists one page of a room's users, by id: up to limit
// (protocol.DefaultMembersPage when 0) after the user id after, with the
// room's exact numbers; the page's Next, when set, is the after of the
// next one.
func (c *Client) MembersPage(ctx context.Context, room, after string, limit int) (protocol.RoomMembers, error) {
	data, err := c.request(ctx, protocol.Request{T: protocol.TypeMembers, Room: room, After: after, Limit: limit}, nil)
	if err != nil {
		return protocol.RoomMembers{}, err
	}
	var rm protocol.RoomMembers
	if err := json.Unmarshal(data, &rm); err != nil {
		return protocol.RoomMembers{}, fmt.Errorf("client: decoding the members: %w", err)
	}
	return rm, nil
}

// Ping measures the round trip to the server with an application-level
// ping frame.
func (c *Client) Ping(ctx context.Context) (rtt time.Duration, err error) {
	s, err := c.session(ctx)
	if err != nil {
		return 0, err
	}
	return s.ping(ctx)
}
