package rooms_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// History is bounded per sender over all rooms and in all: a user who
// spreads events over many rooms is refused once over its share, others
// go on, and the bytes come back as events expire.
func TestHistoryQuota(t *testing.T) {
	now := time.Now()
	h := rooms.New(rooms.Config{Now: func() time.Time { return now }, HistoryTTL: time.Minute,
		HistoryUserBytes: 100_000, HistoryTotalBytes: 150_000})
	attacker, alice, bob := &member{id: "x"}, &member{id: "a"}, &member{id: "b"}
	for _, m := range []*member{attacker, alice, bob} {
		h.Register(m)
	}
	data := json.RawMessage(`"` + strings.Repeat("x", 10_000) + `"`)
	overQuota := func(err error) bool {
		var pe *protocol.Error
		return errors.As(err, &pe) && pe.Code == protocol.CodeOverQuota
	}
	sent := 0
	for i := range 100 {
		room := fmt.Sprintf("flood-%d", i)
		if _, err := h.Join(attacker, room, nil); err != nil {
			t.Fatal(err)
		}
		_, err := h.Emit(attacker, rooms.Target{Room: room}, "x", data, rooms.EmitOptions{})
		if overQuota(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if sent < 8 || sent > 10 {
		t.Fatalf("the flooder kept %d events of 10 kB, want about its 100 kB share", sent)
	}
	// alice and bob chat on; alice's big events reach the total, past
	// which she is refused but bob's small ones go on.
	for _, m := range []*member{alice, bob} {
		if _, err := h.Join(m, "chat", nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ {
		_, err := h.Emit(alice, rooms.Target{Room: "chat"}, "x", data, rooms.EmitOptions{})
		if overQuota(err) {
			break
		}
		if err != nil || i > 10 {
			t.Fatalf("alice's event %d: %v", i, err)
		}
	}
	if got := h.Stats().HistoryBytes; got > 150_000+20_000 {
		t.Fatalf("history holds %d bytes, over its total", got)
	}
	for i := range 20 {
		if _, err := h.Emit(bob, rooms.Target{Room: "chat"}, "chat", json.RawMessage(`"hi"`), rooms.EmitOptions{}); err != nil {
			t.Fatalf("bob's message %d: %v", i, err)
		}
	}
	now = now.Add(2 * time.Minute)
	h.Sweep()
	if got := h.Stats().HistoryBytes; got != 0 {
		t.Fatalf("after expiry history holds %d bytes", got)
	}
	if _, err := h.Emit(attacker, rooms.Target{Room: "flood-0"}, "x", data, rooms.EmitOptions{}); err != nil {
		t.Fatalf("after expiry the flooder's share is back: %v", err)
	}
}
