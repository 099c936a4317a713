package server_test

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer"
)

// slowPuts is a store whose small writes (upload records) take delay
// while it is set, as a storage service under load.
type slowPuts struct {
	storage.Store
	delay atomic.Int64 // nanoseconds
}

func (s *slowPuts) Put(ctx context.Context, key string, r io.Reader, size int64, meta storage.Meta) error {
	if d := time.Duration(s.delay.Load()); d > 0 && strings.HasPrefix(key, ".ferry/uploads/") {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Put(ctx, key, r, size, meta)
}

// Storage work never holds up the connection's reader: while an
// upload.open waits 5 s for storage, chat on the same connection is
// answered at once, and the open is answered when storage is done.
func TestStorageWaitsOffTheReader(t *testing.T) {
	store := &slowPuts{Store: stores(t)["disk"](t)}
	e := newFileEnv(t, store, transfer.Config{}, server.Config{PingTimeout: 12 * time.Second})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "lobby"})
	store.delay.Store(int64(5 * time.Second))

	p.send(frame{"t": "upload.open", "id": 1000, "room": "lobby", "name": "slow.bin", "size": 10})
	opened := time.Now()
	var worst time.Duration
	for i := range 5 {
		start := time.Now()
		p.mustAck(frame{"t": "emit", "room": "lobby", "event": "chat", "data": i})
		worst = max(worst, time.Since(start))
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("emits answered within %v while an upload.open waited for storage", worst)
	if worst > 50*time.Millisecond {
		t.Errorf("an emit waited %v behind an upload.open", worst)
	}
	_ = p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var f frame
		if err := p.ws.ReadJSON(&f); err != nil {
			t.Fatal(err)
		}
		if f["id"] == float64(1000) {
			if f["t"] != "ack" {
				t.Fatalf("upload.open: %v", f)
			}
			break
		}
	}
	if d := time.Since(opened); d < 4*time.Second {
		t.Errorf("upload.open answered after %v: the store was not slow", d)
	}
}
