package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/storage"
)

// countingFile counts the bytes read from it.
type countingFile struct {
	r    *bytes.Reader
	read atomic.Int64
}

func (f *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.r.ReadAt(p, off)
	f.read.Add(int64(n))
	return n, err
}

// Without a digest from the caller the file is read once: hashed as it
// is sent (a CRC32C unless a SHA-256 is asked for), the checksum given
// with upload.finish, and checked by the server.
func TestUploadHashesWhileSending(t *testing.T) {
	data := randomBytes(20_000)
	tests := []struct {
		name               string
		opts               UploadOptions
		wantLater, wantCRC bool
		wantSHA            string
	}{
		{"CRC32C while sending", UploadOptions{}, false, true, ""},
		{"SHA-256 while sending", UploadOptions{Checksum: ChecksumSHA256}, true, false, ""},
		{"digest given", UploadOptions{SHA256: hexSHA(data)}, false, false, hexSHA(data)},
		{"no checksum", UploadOptions{NoChecksum: true}, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newUploadFake(t)
			c := dial(t, fake.URL, "x")
			file := &countingFile{r: bytes.NewReader(data)}
			var ps []Progress
			tt.opts.Name = "a.bin"
			tt.opts.OnProgress = func(p Progress) { ps = append(ps, p) }
			f, err := c.Upload(testContext(t), "share", file, int64(len(data)), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			opens, chunked := fake.counts()
			if len(opens) != 1 || opens[0].SHA256Later != tt.wantLater || opens[0].CRC32CLater != tt.wantCRC || opens[0].SHA256 != tt.wantSHA {
				t.Errorf("opens %+v, want one with sha256_later %v, crc32c_later %v, sha256 %q", opens, tt.wantLater, tt.wantCRC, tt.wantSHA)
			}
			if f.SHA256 != hexSHA(data) || chunked != int64(len(data)) {
				t.Errorf("file %+v after %d chunk bytes", f, chunked)
			}
			if n := file.read.Load(); n != int64(len(data)) {
				t.Errorf("read %d bytes of the file, want %d: one pass", n, len(data))
			}
			heard := false
			for _, p := range ps {
				if p.Size != int64(len(data)) || p.Durable > p.Received || p.Received > p.Size || p.Sent > p.Size {
					t.Fatalf("progress %+v out of order", p)
				}
				heard = heard || p.Received > 0 && p.Received < p.Size
			}
			if !heard {
				t.Errorf("no progress reported what the server received: %+v", ps)
			}
		})
	}
}

// busy is not an error: Upload opens again after the time the server
// asks for (at least busyWaitMin). storage_full is final.
func TestUploadOpenRefusals(t *testing.T) {
	data := randomBytes(3000)
	tests := []struct {
		name      string
		refuse    []protocol.ErrorFrame
		wantOpens int
		wantErr   string
		wantWait  time.Duration
	}{
		{"busy twice", []protocol.ErrorFrame{{Code: protocol.CodeBusy, RetryAfterMS: 150}, {Code: protocol.CodeBusy}}, 3, "", 150*time.Millisecond + busyWaitMin},
		{"storage full", []protocol.ErrorFrame{{Code: protocol.CodeStorageFull}}, 1, protocol.CodeStorageFull, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newUploadFake(t)
			fake.refuse = tt.refuse
			c := dial(t, fake.URL, "x")
			var waits []error
			start := time.Now()
			_, err := c.Upload(testContext(t), "share", bytes.NewReader(data), int64(len(data)), UploadOptions{
				Name: "a.bin", OnWait: func(err error) { waits = append(waits, err) },
			})
			took := time.Since(start)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && !errors.Is(err, &protocol.Error{Code: tt.wantErr}) {
				t.Fatalf("Upload = %v, want %q", err, tt.wantErr)
			}
			if opens, _ := fake.counts(); len(opens) != tt.wantOpens {
				t.Errorf("%d opens, want %d", len(opens), tt.wantOpens)
			}
			if took < tt.wantWait {
				t.Errorf("took %v, want at least %v of waiting", took, tt.wantWait)
			}
			if tt.wantWait > 0 && (len(waits) != 1 || !errors.Is(waits[0], &protocol.Error{Code: protocol.CodeBusy})) {
				t.Errorf("waits %v, want one busy", waits)
			}
		})
	}
}

// An upload that another run left at the server goes on from where the
// server stands: the bytes before are read to be hashed, never resent.
// One the server cannot continue is started again, and OnRestart says why.
func TestUploadResumeOption(t *testing.T) {
	data := randomBytes(20_000)
	tests := []struct {
		name        string
		held        []byte // what the server holds as up_prev
		received    int
		heldSHA     bool // up_prev was opened with sha256_later (else crc32c_later)
		wantOffset  int64
		wantRestart string
	}{
		{"resumed", data, 13_000, false, 13_000, ""},
		// Another run (or version) opened it with the SHA-256: it is
		// finished with the SHA-256, as its grant says.
		{"resumed, opened with SHA-256", data, 13_000, true, 13_000, ""},
		{"all received", data, len(data), false, int64(len(data)), ""},
		{"unknown", nil, 0, false, 0, protocol.CodeUnknownUpload},
		{"another file", data[:15_000], 100, false, 0, protocol.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newUploadFake(t)
			if tt.held != nil {
				later := protocol.LaterCRC32C
				if tt.heldSHA {
					later = protocol.LaterSHA256
				}
				fake.hold("up_prev", tt.held, tt.received, later)
			}
			c := dial(t, fake.URL, "x")
			var opened []int64
			var restarts []error
			f, err := c.Upload(testContext(t), "share", bytes.NewReader(data), int64(len(data)), UploadOptions{
				Name: "a.bin", Resume: "up_prev",
				OnOpen: func(id string, off int64) {
					if (id == "up_prev") != (tt.wantRestart == "") {
						t.Errorf("granted %s", id)
					}
					opened = append(opened, off)
				},
				OnRestart: func(err error) { restarts = append(restarts, err) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if f.SHA256 != hexSHA(data) {
				t.Errorf("file %+v", f)
			}
			if len(opened) != 1 || opened[0] != tt.wantOffset {
				t.Errorf("OnOpen offsets %v, want [%d]", opened, tt.wantOffset)
			}
			opens, chunked := fake.counts()
			if want := int64(len(data)) - tt.wantOffset; chunked != want {
				t.Errorf("%d chunk bytes sent, want %d", chunked, want)
			}
			if tt.wantRestart == "" {
				if len(restarts) != 0 || len(opens) != 1 || opens[0].Resume != "up_prev" {
					t.Errorf("restarts %v, opens %+v; want one resume", restarts, opens)
				}
				fake.mu.Lock()
				finishes := fake.finishes
				fake.mu.Unlock()
				if tt.received < len(data) && (len(finishes) != 1 || (finishes[0].SHA256 != "") != tt.heldSHA || (finishes[0].CRC32C != "") == tt.heldSHA) {
					t.Errorf("upload.finish %+v, want one with the held upload's digest (sha256: %v)", finishes, tt.heldSHA)
				}
				return
			}
			if len(restarts) != 1 || !errors.Is(restarts[0], &protocol.Error{Code: tt.wantRestart}) {
				t.Errorf("restarts %v, want one for %s", restarts, tt.wantRestart)
			}
			if last := opens[len(opens)-1]; last.Resume != "" || last.Room != "share" || !last.CRC32CLater {
				t.Errorf("new upload opened with %+v", last)
			}
		})
	}
}

// A server before crc32c_later ignores it and waits for no digest: the
// client then sends no upload.finish, computes the SHA-256 and checks the
// stored file's against it.
func TestUploadServerWithoutCRC32C(t *testing.T) {
	for _, wrong := range []bool{false, true} {
		fake := newUploadFake(t)
		fake.noCRC = true
		if wrong {
			fake.storedSHA = strings.Repeat("0", 64)
		}
		c := dial(t, fake.URL, "x")
		data := randomBytes(5000)
		f, err := c.Upload(testContext(t), "share", bytes.NewReader(data), int64(len(data)), UploadOptions{Name: "a.bin"})
		switch {
		case wrong && !errors.Is(err, &protocol.Error{Code: protocol.CodeChecksumMismatch}):
			t.Errorf("stored with another SHA-256: Upload = %v, want checksum_mismatch", err)
		case !wrong && (err != nil || f.SHA256 != hexSHA(data)):
			t.Errorf("Upload = %+v, %v", f, err)
		}
		fake.mu.Lock()
		if len(fake.finishes) != 0 {
			t.Errorf("upload.finish sent to a server that waits for none: %+v", fake.finishes)
		}
		fake.mu.Unlock()
	}

	// Resuming there (as a re-run of ferry send would) an upload that waits
	// for its SHA-256, or for nothing: the SHA-256 is given, a refusal is
	// no error, and the stored file's digest is checked here.
	data := randomBytes(20_000)
	for _, tt := range []struct {
		later string
		wrong bool
	}{{protocol.LaterSHA256, false}, {"", false}, {"", true}} {
		fake := newUploadFake(t)
		fake.noCRC = true
		fake.hold("up_prev", data, 13_000, tt.later)
		if tt.wrong {
			fake.storedSHA = strings.Repeat("0", 64)
		}
		c := dial(t, fake.URL, "x")
		f, err := c.Upload(testContext(t), "share", bytes.NewReader(data), int64(len(data)), UploadOptions{Name: "a.bin", Resume: "up_prev"})
		switch {
		case tt.wrong && !errors.Is(err, &protocol.Error{Code: protocol.CodeChecksumMismatch}):
			t.Errorf("resumed %q, stored with another SHA-256: Upload = %v, want checksum_mismatch", tt.later, err)
		case !tt.wrong && (err != nil || f.SHA256 != hexSHA(data)):
			t.Errorf("resumed %q: Upload = %+v, %v", tt.later, f, err)
		}
		fake.mu.Lock()
		finishes := fake.finishes
		fake.mu.Unlock()
		if tt.later != "" && (len(finishes) != 1 || finishes[0].SHA256 != hexSHA(data)) {
			t.Errorf("resumed %q: upload.finish %+v, want one with the SHA-256", tt.later, finishes)
		}
	}
}

// A server that stores a file whose digest is not the one of the bytes
// read here (one that does not know sha256_later) is caught, when the
// SHA-256 is computed here.
func TestUploadChecksStoredDigest(t *testing.T) {
	fake := newUploadFake(t)
	fake.storedSHA = strings.Repeat("0", 64)
	c := dial(t, fake.URL, "x")
	data := randomBytes(5000)
	_, err := c.Upload(testContext(t), "share", bytes.NewReader(data), int64(len(data)), UploadOptions{Name: "a.bin", Checksum: ChecksumSHA256})
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeChecksumMismatch}) {
		t.Errorf("Upload = %v, want checksum_mismatch", err)
	}
}

// An upload kept on the server when its context ends is finished by
// another client of the same user, as a re-run of an app that died would:
// no more than what the server had not stored is sent again.
func TestUploadKeptAndResumedByAnotherClient(t *testing.T) {
	ctx := testContext(t)
	fs := startFileServer(t)
	first := dial(t, fs.URL, "phone")
	if _, err := first.Join(ctx, "share"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(3*storage.MinPartSize + 999)
	var id string
	var durable int64
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err := first.Upload(cctx, "share", bytes.NewReader(data), int64(len(data)), UploadOptions{
		Name: "v.bin", KeepOnCancel: true,
		OnOpen: func(up string, _ int64) { id = up },
		OnProgress: func(p Progress) {
			if p.Durable >= storage.MinPartSize {
				durable = p.Durable
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) || id == "" {
		t.Fatalf("Upload = %v (upload %q), want context.Canceled", err, id)
	}
	closeAndWait(t, first)

	second := dial(t, fs.URL, "phone", func(c *Config) { c.Token = first.Token() })
	if _, err := second.Join(ctx, "share"); err != nil {
		t.Fatal(err)
	}
	file := &countingFile{r: bytes.NewReader(data)}
	var offset int64 = -1
	f, err := second.Upload(ctx, "share", file, int64(len(data)), UploadOptions{
		Name: "v.bin", Resume: id,
		OnOpen: func(up string, off int64) {
			if up == id && offset < 0 {
				offset = off
			}
		},
		OnRestart: func(err error) { t.Errorf("restarted: %v", err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if offset < durable {
		t.Errorf("resumed at %d, want at least the durable %d", offset, durable)
	}
	if f.SHA256 != hexSHA(data) {
		t.Errorf("file %+v, want sha256 %s", f, hexSHA(data))
	}
	var buf bytes.Buffer
	if _, err := second.Download(ctx, f, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("download: %d bytes, %v", buf.Len(), err)
	}
}
