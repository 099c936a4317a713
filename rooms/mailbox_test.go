package rooms_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// recorder keeps what it is given.
type recorder struct {
	member
	msgs []string
}

func (r *recorder) CatchUp(msg *rooms.Message) bool {
	r.msgs = append(r.msgs, string(msg.JSON))
	return true
}

// Waiting direct messages are bounded in bytes, per user (the oldest go)
// and in all (further ones are refused), and the bytes are given back as
// they are delivered.
func TestMailboxBytes(t *testing.T) {
	h := rooms.New(rooms.Config{OfflineBytes: 2000, OfflineTotalBytes: 2800})
	sender := &member{id: "s"}
	h.Register(sender)
	data := func(i int) json.RawMessage {
		return json.RawMessage(`"` + strings.Repeat(string(rune('a'+i)), 600) + `"`)
	}
	send := func(user string, i int) error {
		_, err := h.Emit(sender, rooms.Target{User: user}, "dm", data(i), rooms.EmitOptions{})
		return err
	}
	for i := range 4 { // about 700 bytes each: the first two go for the last two
		if err := send("bob", i); err != nil {
			t.Fatalf("message %d to bob: %v", i, err)
		}
	}
	if err := send("carol", 0); err != nil {
		t.Fatalf("first message to carol: %v", err)
	}
	// bob holds two, carol one: a fifth would pass the total.
	err := send("carol", 1)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnknownTarget {
		t.Fatalf("message past the total: %v", err)
	}
	if err := send("dave", 0); err == nil {
		t.Fatal("a new mailbox past the total was accepted")
	}
	big := json.RawMessage(`"` + strings.Repeat("z", 2100) + `"`)
	if _, err := h.Emit(sender, rooms.Target{User: "carol"}, "dm", big, rooms.EmitOptions{}); err == nil {
		t.Fatal("a message larger than a mailbox was accepted")
	}

	bob := &recorder{member: member{id: "b"}}
	h.Register(&userRecorder{recorder: bob, user: "bob"}) // member's own UserID is "u"+id
	if len(bob.msgs) != 2 || !strings.Contains(bob.msgs[0], string(data(2))) || !strings.Contains(bob.msgs[1], string(data(3))) {
		t.Fatalf("bob got %d messages: %.80q", len(bob.msgs), bob.msgs)
	}
	// bob's bytes are free again.
	if err := send("dave", 0); err != nil {
		t.Fatalf("after bob's messages were delivered: %v", err)
	}
}

type userRecorder struct {
	*recorder
	user string
}

func (u *userRecorder) UserID() string { return u.user }

// A sender cannot push out others' waiting messages, nor fill every
// mailbox: a full mailbox drops the heaviest sender's oldest message, and
// a sender's waiting messages in all mailboxes are bounded (over_quota).
func TestMailboxFairness(t *testing.T) {
	h := rooms.New(rooms.Config{OfflineSize: 10, OfflineBytes: 10_000, OfflineSenderBytes: 20_000, OfflineTotalBytes: 1 << 20})
	alice, spammer := &member{id: "a"}, &member{id: "s"}
	h.Register(alice)
	h.Register(spammer)
	dm := func(from *member, to, text string) error {
		_, err := h.Emit(from, rooms.Target{User: to}, "dm", json.RawMessage(`"`+text+`"`), rooms.EmitOptions{})
		return err
	}
	// member's user ids are "u" + id: the victim is user "uv".
	if err := dm(alice, "uv", "meet at noon"); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := dm(spammer, "uv", fmt.Sprintf("spam %d %s", i, strings.Repeat("x", 500))); err != nil {
			t.Fatalf("spam %d: %v", i, err)
		}
	}
	victim := &recorder{member: member{id: "v"}}
	h.Register(victim)
	got := strings.Join(victim.msgs, "\n")
	if !strings.Contains(got, "meet at noon") {
		t.Fatalf("alice's message was pushed out by spam; the victim got:\n%.300s", got)
	}
	if n := len(victim.msgs); n != 10 {
		t.Errorf("the victim got %d messages, want its mailbox's 10", n)
	}
	// Made-up users: the spammer's share runs out, alice's goes on.
	var refused error
	for i := range 100 {
		if refused = dm(spammer, fmt.Sprintf("nobody%d", i), strings.Repeat("y", 900)); refused != nil {
			break
		}
	}
	var pe *protocol.Error
	if !errors.As(refused, &pe) || pe.Code != protocol.CodeOverQuota {
		t.Fatalf("the spammer's messages to made-up users: %v, want over_quota", refused)
	}
	if err := dm(alice, "bob", "hello"); err != nil {
		t.Fatalf("alice's message to an offline user after the spam: %v", err)
	}
}
