package server_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/s3"
	"github.com/ferryhq/ferry/transfer"
)

// waitDurable polls an upload's state until n bytes of it are durable.
func (p *peer) waitDurable(id string, n float64) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.mustAck(frame{"t": "upload.status", "upload": id})["data"].(map[string]any)
		if st["durable"].(float64) >= n {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("upload %s: not %v bytes durable: %v", id, n, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The connection is cut at random points; each time the client reconnects,
// asks for the upload's state and resumes from the server's offset.
func TestResumeAfterDroppedConnections(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			e := newFileEnv(t, newStore(t), transfer.Config{PartSize: storage.MinPartSize}, server.Config{})
			proxy := ferrytest.NewProxy(t, strings.TrimPrefix(e.URL, "http://"))
			data := randomBytes(3*storage.MinPartSize + 4321)
			p := dial(t, "ws://"+proxy.Addr+"/ws?name=mobile")
			token := p.welcome.Token
			p.mustAck(frame{"t": "join", "room": "r"})
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			cutAt := int64(rng.IntN(len(data)/3)) + 1
			res, _ := p.upload("r", data, uploadOpts{name: "big.bin", sha: sha(data), cutAfter: cutAt, base64: name == "minio"})
			id := res["upload"].(string)
			var done frame
			for attempt := 0; done == nil; attempt++ {
				if attempt > 20 {
					t.Fatal("too many attempts")
				}
				proxy.Cut()
				p = dial(t, "ws://"+proxy.Addr+"/ws?token="+token)
				p.mustAck(frame{"t": "join", "room": "r"})
				st := p.mustAck(frame{"t": "upload.status", "upload": id})["data"].(map[string]any)
				off := int64(st["offset"].(float64))
				if off > int64(len(data)) || st["status"] == "failed" {
					t.Fatalf("status %v", st)
				}
				next := int64(0)
				if attempt < 3 {
					next = off + int64(rng.IntN(len(data)/3)) + 1
				}
				if next >= int64(len(data)) {
					next = 0
				}
				res, errf := p.upload("r", data, uploadOpts{resume: id, name: "big.bin", sha: sha(data), cutAfter: next})
				if errf != nil {
					t.Fatalf("attempt %d: %v", attempt, errf)
				}
				if res["t"] == "upload.done" {
					done = res
				}
			}
			f := done["file"].(map[string]any)
			resp, got := e.download(t, f["url"].(string), nil)
			if resp.StatusCode != 200 || !bytes.Equal(got, data) {
				t.Fatalf("download after resumes: %d, %d bytes", resp.StatusCode, len(got))
			}
		})
	}
}

// The server process goes away mid-upload; a new one over the same storage
// takes the upload over from its durable offset.
func TestResumeAfterServerRestart(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			key := bytes.Repeat([]byte{7}, 32)
			first := newFileEnv(t, store, transfer.Config{PartSize: storage.MinPartSize}, server.Config{AnonKey: key})
			p := dial(t, first.WS)
			p.mustAck(frame{"t": "join", "room": "r"})
			data := randomBytes(3*storage.MinPartSize + 99)
			res, _ := p.upload("r", data, uploadOpts{name: "r.bin", sha: sha(data), cutAfter: 2*storage.MinPartSize + 5000})
			id := res["upload"].(string)
			p.waitDurable(id, storage.MinPartSize) // then stop the server
			first.Stop()

			second := newFileEnv(t, store, transfer.Config{PartSize: storage.MinPartSize}, server.Config{AnonKey: key})
			q := dial(t, second.WS+"?token="+p.welcome.Token)
			if q.welcome.User != p.welcome.User {
				t.Fatalf("user changed across restart: %s, %s", p.welcome.User, q.welcome.User)
			}
			q.mustAck(frame{"t": "join", "room": "r"})
			st := q.mustAck(frame{"t": "upload.status", "upload": id})["data"].(map[string]any)
			if st["offset"].(float64) < storage.MinPartSize {
				t.Fatalf("state after restart %v", st)
			}
			done, errf := q.upload("r", data, uploadOpts{resume: id, name: "r.bin", sha: sha(data)})
			if errf != nil {
				t.Fatal(errf)
			}
			resp, got := second.download(t, done["file"].(map[string]any)["url"].(string), nil)
			if resp.StatusCode != 200 || !bytes.Equal(got, data) {
				t.Fatalf("download after restart: %d, %d bytes", resp.StatusCode, len(got))
			}
		})
	}
}

// MinIO stops in the middle of an upload: the client is told, the upload
// waits, and it completes once storage is back.
func TestStorageOutage(t *testing.T) {
	m := testenv.StartMinIO(t)
	if m == nil {
		return
	}
	store, err := s3.New(context.Background(), s3.Config{Endpoint: m.Endpoint, Bucket: "outage", AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := newFileEnv(t, store, transfer.Config{PartSize: storage.MinPartSize}, server.Config{})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "r"})
	data := randomBytes(4*storage.MinPartSize + 1)
	res, _ := p.upload("r", data, uploadOpts{name: "o.bin", sha: sha(data), cutAfter: storage.MinPartSize / 2})
	id := res["upload"].(string)
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		restarted <- m.Start()
	}()
	done, errf := p.upload("r", data, uploadOpts{resume: id, name: "o.bin", sha: sha(data)})
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if errf != nil {
		t.Fatal(errf)
	}
	if p.storageErrors == 0 {
		t.Fatal("the client was never told that storage was unavailable")
	}
	resp, got := e.download(t, done["file"].(map[string]any)["url"].(string), nil)
	if resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("download after outage: %d, %d bytes", resp.StatusCode, len(got))
	}
}

// An upload nobody finishes expires: its parts and state are removed.
func TestAbandonedUploadsExpire(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			e := newFileEnv(t, store, transfer.Config{PartSize: storage.MinPartSize, TTL: 300 * time.Millisecond}, server.Config{})
			p := dial(t, e.WS)
			p.mustAck(frame{"t": "join", "room": "r"})
			data := randomBytes(2*storage.MinPartSize + 10)
			res, _ := p.upload("r", data, uploadOpts{name: "gone.bin", cutAfter: storage.MinPartSize + 100})
			id := res["upload"].(string)
			p.waitDurable(id, storage.MinPartSize)
			p.ws.Close()
			time.Sleep(500 * time.Millisecond)
			if err := e.Transfer.Expire(context.Background()); err != nil {
				t.Fatal(err)
			}
			q := dial(t, e.WS+"?token="+p.welcome.Token)
			q.mustError(frame{"t": "upload.status", "upload": id}, transfer.CodeUnknownUpload)
			if l, ok := store.(storage.MultipartLister); ok {
				n := 0
				_ = l.ListMultipart(context.Background(), "", func(key, uploadID string, started time.Time) error { n++; return nil })
				if n != 0 {
					t.Fatalf("%d multipart uploads left after expiry", n)
				}
			}
			n := 0
			_ = store.List(context.Background(), "", func(i storage.Info) error { n++; t.Logf("left: %s", i.Key); return nil })
			if n != 0 {
				t.Fatalf("%d objects left after expiry", n)
			}
		})
	}
}
