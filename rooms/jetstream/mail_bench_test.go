package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/rooms"
)

// mailBenchHub returns a hub, with mailboxes on an embedded server in a
// fresh folder (and its Run deleting in the background) or in memory.
func mailBenchHub(b *testing.B, store bool, cfg rooms.Config) (*rooms.Hub, *Mailboxes) {
	b.Helper()
	var mail *Mailboxes
	if store {
		emb, err := StartEmbedded(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { shutdown(b, emb) })
		if mail, err = NewMailboxes(context.Background(), emb.Conn(), MailConfig{MaxBytes: 1 << 30}); err != nil {
			b.Fatal(err)
		}
		cfg.Mailboxes = mail
	}
	h := rooms.New(cfg)
	if err := h.LoadMailboxes(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	b.Cleanup(func() { cancel(); <-done })
	return h, mail
}

var storeNames = map[bool]string{false: "memory", true: "jetstream"}

// BenchmarkMailQueue is a ~100-byte direct message to a user who is not
// connected, from Emit to the sender's ack (with a store, the letter is
// put first). The recipients rotate over 1000 users, so no mailbox fills.
func BenchmarkMailQueue(b *testing.B) {
	for _, store := range []bool{false, true} {
		b.Run(storeNames[store], func(b *testing.B) {
			h, _ := mailBenchHub(b, store, rooms.Config{OfflineTotalBytes: 1 << 30})
			m := &counter{id: "sender"}
			h.Register(m)
			i := 0
			for b.Loop() {
				i++
				d, err := h.Emit(m, rooms.Target{User: fmt.Sprintf("away%d", i%1000)}, "dm", benchData, rooms.EmitOptions{MsgID: fmt.Sprintf("m%d", i)})
				if err != nil || !d.Queued {
					b.Fatal(d, err)
				}
			}
		})
	}
}

// BenchmarkMailOnline is a direct message to a connected user: the store
// is not called (but once per million messages, to reserve seqs).
func BenchmarkMailOnline(b *testing.B) {
	for _, store := range []bool{false, true} {
		b.Run(storeNames[store], func(b *testing.B) {
			h, _ := mailBenchHub(b, store, rooms.Config{})
			m, to := &counter{id: "sender"}, &counter{id: "here"}
			h.Register(m)
			h.Register(to)
			for b.Loop() {
				if _, err := h.Emit(m, rooms.Target{User: to.UserID()}, "dm", benchData, rooms.EmitOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMailDeliver is a user connecting to 100 waiting letters: the
// connection's registration (the letters queued to it), and the deletion
// from the store that Run makes after it (one purge of the user's
// subject), or, for comparison, one deletion per letter.
func BenchmarkMailDeliver(b *testing.B) {
	const waiting = 100
	fill := func(b *testing.B, h *rooms.Hub, user string) {
		m := &counter{id: "sender"}
		h.Register(m)
		for i := range waiting {
			if _, err := h.Emit(m, rooms.Target{User: user}, "dm", benchData, rooms.EmitOptions{MsgID: fmt.Sprintf("%s-%d", user, i)}); err != nil {
				b.Fatal(err)
			}
		}
		h.Unregister(m)
	}
	for _, store := range []bool{false, true} {
		b.Run("register/"+storeNames[store], func(b *testing.B) {
			h, _ := mailBenchHub(b, store, rooms.Config{})
			i := 0
			for b.Loop() {
				i++
				b.StopTimer()
				c := &counter{id: fmt.Sprintf("away%d", i)}
				fill(b, h, c.UserID())
				b.StartTimer()
				h.Register(c)
				if c.got.Load() != waiting {
					b.Fatalf("got %d", c.got.Load())
				}
			}
		})
	}
	for _, purge := range []bool{true, false} {
		b.Run(map[bool]string{true: "store-take-100", false: "store-drop-each-100"}[purge], func(b *testing.B) {
			_, mail := mailBenchHub(b, true, rooms.Config{})
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				b.StopTimer()
				user := fmt.Sprintf("away%d", i)
				var refs []rooms.MailRef
				for k := range waiting {
					ref, err := mail.PutLetter(ctx, rooms.Letter{User: user, Sender: "s", Epoch: "e", Seq: uint64(k + 1), At: time.Now(), JSON: benchData})
					if err != nil {
						b.Fatal(err)
					}
					refs = append(refs, ref)
				}
				b.StartTimer()
				if purge {
					if err := mail.TakeLetters(ctx, user, refs[len(refs)-1]); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for _, ref := range refs {
					if err := mail.DropLetter(ctx, user, ref); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkMailLoad is a start: LoadMailboxes reading every waiting letter
// and rebuilding the mailboxes and their accounting. "full" is the default
// OfflineTotalBytes (64 MiB) nearly full: 64,000 letters of about 1000
// bytes for 1000 users from 64 senders.
func BenchmarkMailLoad(b *testing.B) {
	for _, tc := range []struct {
		name           string
		letters, bytes int
	}{
		{"10k-letters-of-300B", 10_000, 100},
		{"full-64k-letters-of-1000B", 64_000, 800},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, mail := mailBenchHub(b, true, rooms.Config{})
			data := json.RawMessage(`"` + strings.Repeat("x", tc.bytes) + `"`)
			senders := make([]*counter, 64)
			for i := range senders {
				senders[i] = &counter{id: fmt.Sprintf("s%d", i)}
				h.Register(senders[i])
			}
			for i := range tc.letters {
				d, err := h.Emit(senders[i%len(senders)], rooms.Target{User: fmt.Sprintf("uaway%d", i%1000)}, "dm", data, rooms.EmitOptions{})
				if err != nil || !d.Queued {
					b.Fatal(d, err)
				}
			}
			info, err := mail.stream.Info(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				h := rooms.New(rooms.Config{Mailboxes: mail})
				if err := h.LoadMailboxes(context.Background()); err != nil {
					b.Fatal(err)
				}
				c := &counter{id: "away0"} // user "uaway0"
				h.Register(c)
				if want := int64(tc.letters / 1000); c.got.Load() != want {
					b.Fatalf("away0 got %d, want %d", c.got.Load(), want)
				}
			}
			b.ReportMetric(float64(info.State.Bytes)/(1<<20), "MiB-on-disk")
		})
	}
}
