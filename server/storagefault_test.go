package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage/disk"
	"github.com/ferryhq/ferry/storage/s3"
	"github.com/ferryhq/ferry/transfer"
)

func readyz(t *testing.T, base string) (int, map[string]string) {
	t.Helper()
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body
}

// A storage service that hangs is told to the uploader within seconds,
// /readyz reports it, chat on the same connection goes on, and the upload
// completes once the service answers again.
func TestHungStorage(t *testing.T) {
	endpoint, ak, sk := testenv.MinIO(t)
	proxy := ferrytest.NewProxy(t, endpoint[len("http://"):])
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	store, err := s3.New(context.Background(), s3.Config{Endpoint: "http://" + proxy.Addr,
		Bucket: "t-" + hex.EncodeToString(b), AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := newFileEnv(t, store, transfer.Config{PartSize: 5 << 20, StorageTimeout: 3 * time.Second, SlowStorage: 2 * time.Second}, server.Config{})
	if code, body := readyz(t, e.URL); code != http.StatusOK {
		t.Fatalf("/readyz before the stall = %d %v", code, body)
	}

	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "lobby"})
	data := randomBytes(12 << 20)
	g := p.mustAck(frame{"t": "upload.open", "room": "lobby", "name": "x.bin", "size": len(data), "sha256": sha(data)})["data"].(map[string]any)
	id := g["upload"].(string)

	proxy.Stall()
	start := time.Now()
	for off := 0; off < 6<<20; off += 256 << 10 {
		p.sendChunk(id, int64(off), data[off:off+256<<10], false)
	}
	f := p.await(func(f frame) bool { return f["t"] == "error" && f["upload"] == id })
	if f["code"] != transfer.CodeStorageUnavailable {
		t.Fatalf("got %v, want storage_unavailable", f)
	}
	told := time.Since(start)
	t.Logf("the uploader heard of the hung storage after %v", told)
	if told > 10*time.Second {
		t.Errorf("told after %v, want within a few seconds", told)
	}
	code, body := readyz(t, e.URL)
	if code != http.StatusServiceUnavailable || body["storage"] != "down" {
		t.Errorf("/readyz during the stall = %d %v, want 503 storage down", code, body)
	}
	// The connection still serves chat.
	chatStart := time.Now()
	p.mustAck(frame{"t": "emit", "room": "lobby", "event": "chat", "data": map[string]string{"text": "still here"}})
	if d := time.Since(chatStart); d > time.Second {
		t.Errorf("an emit took %v while storage hung", d)
	}

	proxy.Resume()
	p.waitDurable(id, 5<<20)
	for off := 6 << 20; off < len(data); off += 256 << 10 {
		p.sendChunk(id, int64(off), data[off:min(off+256<<10, len(data))], false)
	}
	done := p.await(func(f frame) bool {
		return (f["t"] == "upload.done" || f["t"] == "error" && f["code"] != transfer.CodeStorageUnavailable) && f["upload"] == id
	})
	if done["t"] != "upload.done" {
		t.Fatalf("after the stall: %v", done)
	}
	_, got := e.download(t, done["file"].(map[string]any)["url"].(string), nil)
	if sha(got) != sha(data) {
		t.Fatal("the stored file differs")
	}
	if code, body := readyz(t, e.URL); code != http.StatusOK {
		t.Errorf("/readyz after the stall = %d %v", code, body)
	}
}

// await reads frames until one that match accepts; the others are dropped.
func (p *peer) await(match func(frame) bool) frame {
	p.t.Helper()
	for {
		if f := p.read(); match(f) {
			return f
		}
	}
}

// A full disk is a clear, final error for the upload that hits it, an
// upload that cannot fit is refused before its first byte, the connection
// goes on, and uploads work again once space is freed.
func TestFullDisk(t *testing.T) {
	dir := testenv.Tmpfs(t, 24<<20)
	store, err := disk.New(disk.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e := newFileEnv(t, store, transfer.Config{PartSize: 5 << 20}, server.Config{})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "lobby"})

	p.mustError(frame{"t": "upload.open", "room": "lobby", "name": "huge.bin", "size": 30 << 20}, transfer.CodeStorageFull)

	// Something else fills the disk while an upload that fitted goes on.
	data := randomBytes(15 << 20)
	g := p.mustAck(frame{"t": "upload.open", "room": "lobby", "name": "x.bin", "size": len(data)})["data"].(map[string]any)
	id := g["upload"].(string)
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	for off := 0; off < 10<<20; off += 256 << 10 {
		p.sendChunk(id, int64(off), data[off:off+256<<10], false)
	}
	f := p.await(func(f frame) bool {
		return f["t"] == "error" && f["upload"] == id && f["code"] != transfer.CodeStorageUnavailable
	})
	if f["code"] != transfer.CodeStorageFull {
		t.Fatalf("got %v, want storage_full", f)
	}
	st := p.mustAck(frame{"t": "upload.status", "upload": id})["data"].(map[string]any)
	if st["status"] != "failed" || st["error"] != transfer.CodeStorageFull {
		t.Fatalf("status %v", st)
	}
	p.mustAck(frame{"t": "emit", "room": "lobby", "event": "chat", "data": "the connection goes on"})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	small := randomBytes(3 << 20)
	done, errf := p.upload("lobby", small, uploadOpts{name: "after.bin", sha: sha(small)})
	if errf != nil {
		t.Fatalf("after freeing space: %v", errf)
	}
	_, got := e.download(t, done["file"].(map[string]any)["url"].(string), nil)
	if sha(got) != sha(small) {
		t.Fatal("the file stored after freeing space differs")
	}
}

// fillDisk writes to path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}
