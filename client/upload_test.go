package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer"
)

// startFileServer runs a ferry with uploads stored on disk, in 5 MiB parts.
func startFileServer(t *testing.T) *ferrytest.Ferry {
	t.Helper()
	return ferrytest.Start(t, ferrytest.DiskStore(t), transfer.Config{PartSize: storage.MinPartSize}, server.Config{})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readLog is a file that records how far it was read.
type readLog struct {
	r        *bytes.Reader
	mu       sync.Mutex
	furthest int64
}

func (l *readLog) ReadAt(p []byte, off int64) (int, error) {
	n, err := l.r.ReadAt(p, off)
	l.mu.Lock()
	l.furthest = max(l.furthest, off+int64(n))
	l.mu.Unlock()
	return n, err
}

func TestUploadAndDownload(t *testing.T) {
	ctx := testContext(t)
	fs := startFileServer(t)
	up := dial(t, fs.URL, "uploader")
	watcher := dial(t, fs.URL, "watcher")
	files := make(chan File, 16)
	watcher.On(FileEvent, func(e Event) {
		var f File
		if err := e.Decode(&f); err != nil {
			t.Errorf("file event %s: %v", e.Data, err)
		}
		files <- f
	})
	for _, c := range []*Client{up, watcher} {
		if _, err := c.Join(ctx, "share"); err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int{0, 1, 100_000, storage.MinPartSize + 12345} {
		for _, b64 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d bytes, base64 %v", size, b64), func(t *testing.T) {
				data := randomBytes(size)
				var last Progress
				f, err := up.Upload(ctx, "share", bytes.NewReader(data), int64(size), UploadOptions{
					Name: fmt.Sprintf("f%d.bin", size), Base64: b64,
					OnProgress: func(p Progress) { last = p },
				})
				if err != nil {
					t.Fatal(err)
				}
				if f.Size != int64(size) || f.SHA256 != hexSHA(data) || f.Room != "share" || f.UserName != "uploader" || f.URL == "" {
					t.Errorf("file %+v", f)
				}
				if want := (Progress{Size: int64(size), Sent: int64(size), Received: int64(size), Durable: int64(size)}); size > 0 && last != want {
					t.Errorf("last progress %+v, want %+v", last, want)
				}
				if got := next(t, files); got.ID != f.ID {
					t.Errorf("announced %+v, want %s", got, f.ID)
				}
				var buf bytes.Buffer
				n, err := watcher.Download(ctx, f, &buf)
				if err != nil || n != int64(size) || !bytes.Equal(buf.Bytes(), data) {
					t.Errorf("download: %d bytes, %v", n, err)
				}
			})
		}
	}
}

// The connection is cut twice in the middle of an upload; it resumes from
// where the server stands, and never reads ahead of the window.
func TestUploadResumesAcrossCuts(t *testing.T) {
	ctx := testContext(t)
	fs := startFileServer(t)
	p := newProxy(t, fs.URL)
	up := dial(t, p.URL(), "mobile", withBackoff(Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}))
	if _, err := up.Join(ctx, "share"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(4*storage.MinPartSize + 777)
	file := &readLog{r: bytes.NewReader(data)}
	cuts := []int64{storage.MinPartSize / 2, 5 * storage.MinPartSize / 2}
	var waits []error
	var ahead, lastDurable int64
	f, err := up.Upload(ctx, "share", file, int64(len(data)), UploadOptions{
		Name: "big.bin", SHA256: hexSHA(data), ChunkSize: 128 << 10,
		OnProgress: func(pr Progress) {
			file.mu.Lock()
			ahead = max(ahead, file.furthest-pr.Durable)
			file.mu.Unlock()
			lastDurable = pr.Durable
			if len(cuts) > 0 && pr.Sent >= cuts[0] {
				cuts = cuts[1:]
				p.cut()
			}
		},
		OnWait: func(err error) { waits = append(waits, err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.SHA256 != hexSHA(data) || f.Size != int64(len(data)) {
		t.Errorf("file %+v", f)
	}
	lost := 0
	for _, w := range waits {
		if errors.Is(w, ErrConnectionLost) {
			lost++
		}
	}
	if lost < 2 || p.accepted() < 3 {
		t.Errorf("%d waits for a lost connection over %d connections; want the 2 cuts to show", lost, p.accepted())
	}
	if window := int64(2 * storage.MinPartSize); ahead > window {
		t.Errorf("read %d bytes ahead of the durable offset; the window is %d", ahead, window)
	}
	if lastDurable != int64(len(data)) {
		t.Errorf("last durable offset %d", lastDurable)
	}
	var buf bytes.Buffer
	if _, err := up.Download(ctx, f, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("download after the cuts: %d bytes, %v", buf.Len(), err)
	}
}

func TestUploadRefused(t *testing.T) {
	ctx := testContext(t)
	fs := startFileServer(t)
	up := dial(t, fs.URL, "up")
	r := record(up)
	if _, err := up.Join(ctx, "share"); err != nil {
		t.Fatal(err)
	}
	elf := append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0}, randomBytes(4000)...)
	_, err := up.Upload(ctx, "share", bytes.NewReader(elf), int64(len(elf)), UploadOptions{Name: "x.jpg"})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != transfer.CodeTypeMismatch || perr.Message == "" {
		t.Fatalf("upload of an ELF named x.jpg: %v, want type_mismatch", err)
	}
	data := randomBytes(1000)
	_, err = up.Upload(ctx, "share", bytes.NewReader(data), 1000, UploadOptions{Name: "a.bin", SHA256: hexSHA([]byte("other"))})
	if !errors.Is(err, &protocol.Error{Code: transfer.CodeChecksumMismatch}) {
		t.Errorf("wrong checksum: %v", err)
	}
	_, err = up.Upload(ctx, "elsewhere", bytes.NewReader(data), 1000, UploadOptions{Name: "a.bin"})
	if !errors.As(err, &perr) || perr.Code != protocol.CodeNotMember {
		t.Errorf("upload to a room not joined: %v", err)
	}
	_, err = up.Upload(ctx, "share", bytes.NewReader(data), 1000, UploadOptions{Name: "a/b.bin"})
	if !errors.Is(err, &protocol.Error{Code: transfer.CodeBadName}) {
		t.Errorf("bad name: %v", err)
	}
	// Nothing was announced.
	for {
		select {
		case e := <-r.events:
			if e.Name == FileEvent {
				t.Errorf("a refused file was announced: %s", e.Raw)
			}
			continue
		case <-time.After(50 * time.Millisecond):
		}
		break
	}
}

// Ending ctx cancels the upload on the server: nothing of it is left.
func TestUploadCanceled(t *testing.T) {
	fs := startFileServer(t)
	up := dial(t, fs.URL, "up")
	if _, err := up.Join(testContext(t), "share"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(3 * storage.MinPartSize)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	_, err := up.Upload(ctx, "share", bytes.NewReader(data), int64(len(data)), UploadOptions{
		Name: "c.bin", NoChecksum: true,
		OnProgress: func(p Progress) {
			if p.Durable >= storage.MinPartSize {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Upload = %v, want context.Canceled", err)
	}
	deadline := time.Now().Add(waitFor)
	for {
		var left []string
		_ = fs.Store.List(context.Background(), "", func(i storage.Info) error {
			left = append(left, i.Key)
			return nil
		})
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left in storage after the cancel: %s", strings.Join(left, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
