package rooms_test

import (
	"encoding/json"
	"errors"
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
