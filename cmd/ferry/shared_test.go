package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/rooms/jetstream"
)

// clusterArgs are the flags of servers sharing one NATS server (started
// here) and one MinIO bucket.
func clusterArgs(t *testing.T) []string {
	t.Helper()
	endpoint, ak, sk := testenv.MinIO(t)
	natsAddr := freePort(t)
	emb, err := jetstream.StartEmbeddedConfig(jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: natsAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return []string{"--nats", "nats://" + natsAddr,
		"--s3-endpoint", endpoint, "--s3-access-key", ak, "--s3-secret-key", sk, "--s3-bucket", "shared-" + hex.EncodeToString(b),
		"--part-size", "5MiB", "--big-part-size", "5MiB", "--rate", "100000", "--rate-burst", "100000"}
}

// download GETs a link the server gave, from the server at addr.
func download(t *testing.T, addr, link string) (int, []byte) {
	t.Helper()
	res, err := http.Get("http://" + addr + link)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// Servers on one NATS and one store are one service: an anonymous user is
// the same user on each, a link one server signed downloads from another,
// and an upload whose connection moves to another server halfway
// completes there, the same file.
func TestServersShareKeysAndUploads(t *testing.T) {
	args := clusterArgs(t)
	addrA, _ := startServe(t, args...)
	addrB, _ := startServe(t, args...)
	addrC, _ := startServe(t, args...)

	wa := dialWire(t, addrA, "")
	if wb := dialWire(t, addrB, wa.token); wb.user != wa.user {
		t.Fatalf("A's anonymous user %s is %s on B", wa.user, wb.user)
	}
	if other := dialWire(t, addrB, ""); other.user == wa.user {
		t.Fatalf("a new anonymous user on B got A's user's id %s", other.user)
	}

	linkAndMovedUpload(t, addrA, addrB, addrC)
}

// linkAndMovedUpload checks that servers at addrA, addrB and addrC (with
// 5 MiB parts) are one service for files: a link signed by A downloads
// from C, an altered one does not; an upload whose connection a balancer
// moves from A to B once a part is stored on A completes on B, the same
// file, from where A stopped.
func linkAndMovedUpload(t *testing.T, addrA, addrB, addrC string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca, err := client.Dial(ctx, client.Config{URL: "http://" + addrA})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if _, err := ca.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	note := []byte("signed by A, fetched from C")
	f, err := ca.Upload(ctx, "lobby", bytes.NewReader(note), int64(len(note)), client.UploadOptions{Name: "note.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := download(t, addrC, f.URL); code != http.StatusOK || !bytes.Equal(body, note) {
		t.Fatalf("A's link on C: %d %q", code, body)
	}
	forged := strings.Replace(f.URL, "sig=", "sig=A", 1)
	if code, _ := download(t, addrC, forged); code != http.StatusForbidden && code != http.StatusNotFound {
		t.Fatalf("an altered link on C: %d", code)
	}

	// An upload through a balancer that moves its client from A to B once
	// a part is stored on A.
	proxy := ferrytest.NewProxy(t, addrA)
	c, err := client.Dial(ctx, client.Config{URL: "http://" + proxy.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	data := randomData(21 << 20)
	var once sync.Once
	moved := make(chan int64, 1)
	var opens []int64
	file, err := c.Upload(ctx, "lobby", bytes.NewReader(data), int64(len(data)), client.UploadOptions{
		Name:   "moved.bin",
		OnOpen: func(_ string, offset int64) { opens = append(opens, offset) },
		OnProgress: func(p client.Progress) {
			if p.Durable >= 5<<20 && p.Sent >= 8<<20 {
				once.Do(func() {
					proxy.Retarget(addrB)
					proxy.Cut()
					moved <- p.Durable
				})
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var durable int64
	select {
	case durable = <-moved:
	default:
		t.Fatal("the upload was never moved")
	}
	if file.SHA256 != sha256Hex(data) {
		t.Fatalf("stored sha256 %s, sent %s", file.SHA256, sha256Hex(data))
	}
	if len(opens) != 2 || opens[1] < durable || opens[1] > 10<<20 {
		t.Fatalf("opened at %v, want at 0 and again on B from what A stored (%d, at most the window past it)", opens, durable)
	}
	// B completed it, and its link opens on A.
	if code, body := download(t, addrA, file.URL); code != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("B's link on A: %d, %d bytes", code, len(body))
	}
}

// The key comes from --secret-file or FERRY_SECRET when given, whatever
// state each server has; a server upgraded to keep it in NATS keeps the
// key of its data folder, and so its anonymous users.
func TestServerKeyPrecedence(t *testing.T) {
	key := bytes.Repeat([]byte("0123456789abcdef"), 3)
	keyFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(keyFile, append(key, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("secret file and environment", func(t *testing.T) {
		// Two servers with nothing else in common.
		addrA, _ := startServe(t, "--secret-file", keyFile)
		t.Setenv("FERRY_SECRET", string(key))
		addrB, _ := startServe(t, "--state", "memory")
		wa := dialWire(t, addrA, "")
		if wb := dialWire(t, addrB, wa.token); wb.user != wa.user {
			t.Fatalf("A's user %s is %s on B", wa.user, wb.user)
		}
	})
	t.Run("upgrade keeps the data folder's key", func(t *testing.T) {
		data := t.TempDir()
		_, stop := startServe(t, "--data", data, "--state", "memory")
		addr := freePort(t)
		_, stop = startServe(t, "--data", data, "--state", "memory", "--addr", addr)
		w := dialWire(t, addr, "")
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		addr2, stop2 := startServe(t, "--data", data)
		if again := dialWire(t, addr2, w.token); again.user != w.user {
			t.Fatalf("after the upgrade the user %s is %s", w.user, again.user)
		}
		// The key is in NATS now: the next start still knows the user,
		// without the file.
		if err := stop2(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(data, ".ferry", "anon.key")); err != nil {
			t.Fatal(err)
		}
		addr3, _ := startServe(t, "--data", data)
		if again := dialWire(t, addr3, w.token); again.user != w.user {
			t.Fatalf("from NATS the user %s is %s", w.user, again.user)
		}
	})
	t.Run("too short", func(t *testing.T) {
		err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--secret", "short"}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--secret") {
			t.Fatalf("a 5-byte secret: %v", err)
		}
	})
}
