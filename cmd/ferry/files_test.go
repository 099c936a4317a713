package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer"
)

// startFileFerry runs a ferry with uploads over store, in 5 MiB parts.
func startFileFerry(t *testing.T, store storage.Store) *ferrytest.Ferry {
	t.Helper()
	return ferrytest.Start(t, store, transfer.Config{PartSize: storage.MinPartSize}, server.Config{})
}

func diskStore(t *testing.T) storage.Store  { return ferrytest.DiskStore(t) }
func minioStore(t *testing.T) storage.Store { return ferrytest.MinIOStore(t) }

// writeJPEG encodes a real JPEG picture into dir/name and returns its path
// and bytes.
func writeJPEG(t *testing.T, dir, name string, seed uint8) (string, []byte) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 640, 400))
	for y := range 400 {
		for x := range 640 {
			img.Set(x, y, color.RGBA{uint8(x) + seed, uint8(y), uint8(x*y) ^ seed, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes()
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomData(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// listenRun is "ferry listen" running in the background.
type listenRun struct {
	stdout, stderr safeBuffer
	cancel         context.CancelFunc
	errc           chan error
}

func startListen(t *testing.T, args ...string) *listenRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	l := &listenRun{cancel: cancel, errc: make(chan error, 1)}
	go func() { l.errc <- run(ctx, append([]string{"listen"}, args...), &l.stdout, &l.stderr) }()
	t.Cleanup(func() { l.stop(t) })
	waitOutput(t, &l.stderr, "listening")
	return l
}

// stop ends listen and checks that it ended well. Calling it again does
// nothing.
func (l *listenRun) stop(t *testing.T) {
	t.Helper()
	if l.errc == nil {
		return
	}
	l.cancel()
	select {
	case err := <-l.errc:
		if err != nil {
			t.Errorf("listen: %v\nstderr: %s", err, l.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Error("listen did not stop")
	}
	l.errc = nil
}

// send runs "ferry send" and returns its output.
func send(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut safeBuffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = run(ctx, append([]string{"send"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// waitFile waits for path to hold want.
func waitFile(t *testing.T, path string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := os.ReadFile(path)
		if err == nil && bytes.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d bytes (%v), want %d identical bytes", path, len(got), err, len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dirNames lists the files in dir, the temporary ones included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A real JPEG goes from "ferry send" through the server and its storage to
// "ferry listen --out", byte for byte: on local disk and on MinIO.
func TestSendAndListenJPEG(t *testing.T) {
	for name, store := range map[string]func(*testing.T) storage.Store{"disk": diskStore, "minio": minioStore} {
		t.Run(name, func(t *testing.T) {
			s := startFileFerry(t, store(t))
			path, data := writeJPEG(t, t.TempDir(), "sunset.jpg", 0)
			out := filepath.Join(t.TempDir(), "inbox")
			l := startListen(t, "--server", s.URL, "--room", "photos", "--out", out, "--name", "ears")

			stdout, stderr, err := send(t, "--server", s.URL, "--room", "photos", "--name", "cam", path)
			if err != nil {
				t.Fatalf("send: %v\nstderr: %s", err, stderr)
			}
			if !strings.Contains(stdout, "sunset.jpg: stored as f_") || !strings.Contains(stdout, "image/jpeg") || !strings.Contains(stdout, sha256Hex(data)) {
				t.Errorf("send stdout %q", stdout)
			}
			waitFile(t, filepath.Join(out, "sunset.jpg"), data)
			waitOutput(t, &l.stderr, "saved ")
			l.stop(t)
			if names := dirNames(t, out); !slices.Equal(names, []string{"sunset.jpg"}) {
				t.Errorf("files in --out: %v", names)
			}
			var announced bool
			for _, f := range frames(t, l.stdout.String()) {
				if f["t"] == "event" && f["event"] == "file" {
					d := f["data"].(map[string]any)
					announced = d["name"] == "sunset.jpg" && d["type"] == "image/jpeg" && d["sha256"] == sha256Hex(data) && d["user_name"] == "cam"
				}
			}
			if !announced {
				t.Errorf("no announcement of sunset.jpg in listen's output:\n%s", l.stdout.String())
			}
		})
	}
}

// --base64 sends the chunks as text frames, --json prints each file's
// record; without --base64 the chunks go as binary frames.
func TestSendBase64AndJSON(t *testing.T) {
	s := startFileFerry(t, diskStore(t))
	dir := t.TempDir()
	one, jpg := writeJPEG(t, dir, "one.jpg", 1)
	blob := randomData(700_000)
	two := writeFile(t, dir, "two.bin", blob)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	watcher, events, _ := member(t, s.URL, "share", "watcher")

	// By default the server checks a CRC32C computed while sending; with
	// --checksum sha256, the SHA-256.
	for _, b64 := range []bool{false, true} {
		r := newRelay(t, s.URL)
		args := []string{"--server", r.URL(), "--room", "share", "--json"}
		checksum := "crc32c"
		if b64 {
			args = append(args, "--base64", "--checksum", "sha256")
			checksum = "sha256"
		}
		args = append(args, one, two)
		stdout, stderr, err := send(t, args...)
		if err != nil {
			t.Fatalf("send (base64 %v): %v\nstderr: %s", b64, err, stderr)
		}
		binary, text, _ := r.counts()
		if b64 && (binary != 0 || text < 2) || !b64 && (binary < 2 || text != 0) {
			t.Errorf("base64 %v: %d binary frames, %d upload.chunk text frames", b64, binary, text)
		}
		if got := r.finished(); len(got) != 2 || got[0] != checksum || got[1] != checksum {
			t.Errorf("upload.finish gave %q, want %s for each file", got, checksum)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("--json printed %d lines, want 2:\n%s", len(lines), stdout)
		}
		for i, want := range []struct {
			name string
			data []byte
			typ  string
		}{{"one.jpg", jpg, "image/jpeg"}, {"two.bin", blob, "application/octet-stream"}} {
			var f client.File
			if err := json.Unmarshal([]byte(lines[i]), &f); err != nil {
				t.Fatalf("line %q: %v", lines[i], err)
			}
			if f.Name != want.name || f.Size != int64(len(want.data)) || f.SHA256 != sha256Hex(want.data) || f.Type != want.typ || f.ID == "" || f.URL == "" || f.Room != "share" {
				t.Errorf("record %+v", f)
			}
			// The link is absolute, on the server send was given (here a
			// relay of WebSocket frames, so it is not fetched).
			if base := r.URL() + "/files/" + f.ID + "/"; !strings.HasPrefix(f.URL, base) {
				t.Errorf("url %q, want it under %s", f.URL, base)
			}
			e := receive(t, events)
			var announced client.File
			if err := e.Decode(&announced); err != nil || e.Name != client.FileEvent || announced.ID != f.ID {
				t.Fatalf("announcement %s, want file %s", e.Raw, f.ID)
			}
			var got bytes.Buffer
			if _, err := watcher.Download(ctx, announced, &got); err != nil || !bytes.Equal(got.Bytes(), want.data) {
				t.Errorf("download of %s: %v", f.Name, err)
			}
		}
	}
}

// Each stored file is told once, by one line on stdout (text or --json),
// and the progress on stderr adds no second one, whatever the number of
// files.
func TestSendOneLinePerFile(t *testing.T) {
	s := startFileFerry(t, diskStore(t))
	dir := t.TempDir()
	one, _ := writeJPEG(t, dir, "one.jpg", 6)
	two := writeFile(t, dir, "two.bin", randomData(300_000))
	for _, mode := range []string{"text", "json"} {
		for _, files := range [][]string{{one}, {one, two}} {
			t.Run(mode+", "+plural(len(files), "file"), func(t *testing.T) {
				args := []string{"--server", s.URL, "--room", "share"}
				if mode == "json" {
					args = append(args, "--json")
				}
				stdout, stderr, err := send(t, append(args, files...)...)
				if err != nil {
					t.Fatalf("send: %v\nstderr: %s", err, stderr)
				}
				for _, path := range files {
					name := filepath.Base(path)
					var told []string
					for _, line := range strings.Split(stdout+stderr, "\n") {
						// Progress lines ("ferry: two.bin: 1.0 MiB received, ...")
						// come every two seconds on a slow machine; they tell
						// no completion.
						if strings.Contains(line, name) && !strings.Contains(line, " received, ") {
							told = append(told, line)
						}
					}
					if len(told) != 1 || !strings.Contains(stdout, told[0]) {
						t.Errorf("%s told %d times, want once on stdout:\n%s\nstdout:\n%s\nstderr:\n%s", name, len(told), strings.Join(told, "\n"), stdout, stderr)
						continue
					}
					if mode == "text" && !regexp.MustCompile(`^`+regexp.QuoteMeta(path)+`: stored as f_\w+ \(.*, sha256 [0-9a-f]{64}\) in \d`).MatchString(told[0]) {
						t.Errorf("line %q", told[0])
					}
					if mode == "json" && !json.Valid([]byte(told[0])) {
						t.Errorf("line %q is not JSON", told[0])
					}
				}
				if n := strings.Count(strings.TrimSpace(stdout), "\n") + 1; n != len(files) {
					t.Errorf("%d lines on stdout, want %d:\n%s", n, len(files), stdout)
				}
			})
		}
	}
}

// The connection drops twice during an upload: send resumes each time and
// the file arrives whole.
func TestSendResumesAcrossCuts(t *testing.T) {
	s := startFileFerry(t, diskStore(t))
	data := randomData(3*storage.MinPartSize + 999)
	path := writeFile(t, t.TempDir(), "big.bin", data)
	r := newRelay(t, s.URL)
	r.cutAt = []int64{storage.MinPartSize / 3, 2 * storage.MinPartSize}
	out := filepath.Join(t.TempDir(), "inbox")
	l := startListen(t, "--server", s.URL, "--room", "share", "--out", out)

	stdout, stderr, err := send(t, "--server", r.URL(), "--room", "share", path)
	if err != nil {
		t.Fatalf("send: %v\nstderr: %s", err, stderr)
	}
	if _, _, cuts := r.counts(); cuts != 2 {
		t.Errorf("%d cuts, want 2", cuts)
	}
	if n := strings.Count(stderr, "connection lost; the upload resumes"); n < 2 {
		t.Errorf("stderr reports %d lost connections, want 2:\n%s", n, stderr)
	}
	if !strings.Contains(stdout, "big.bin: stored as") {
		t.Errorf("stdout %q", stdout)
	}
	waitFile(t, filepath.Join(out, "big.bin"), data)
	l.stop(t)
}

// A file whose bytes contradict its name is refused: send fails with a
// sentence for a person, and the files around it still go.
func TestSendRefusedFile(t *testing.T) {
	s := startFileFerry(t, diskStore(t))
	dir := t.TempDir()
	elf := writeFile(t, dir, "x.jpg", append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0}, randomData(5000)...))
	_, _, err := send(t, "--server", s.URL, "--room", "share", elf)
	if err == nil || !strings.HasSuffix(err.Error(), "x.jpg: "+protocol.Sentence(protocol.CodeTypeMismatch)+" [type_mismatch]") {
		t.Fatalf("send of an ELF named x.jpg: %v, want the type_mismatch sentence", err)
	}

	good, _ := writeJPEG(t, dir, "good.jpg", 2)
	stdout, _, err := send(t, "--server", s.URL, "--room", "share", elf, good)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 files not sent") || !strings.Contains(err.Error(), "type_mismatch") {
		t.Errorf("send of a bad and a good file: %v", err)
	}
	if !strings.Contains(stdout, "good.jpg: stored as") || strings.Contains(stdout, "x.jpg") {
		t.Errorf("stdout %q", stdout)
	}
}

// listen --state keeps the room's position: a second run gets exactly what
// was sent while it was away, files included, and nothing twice.
func TestListenStateResumes(t *testing.T) {
	s := startFileFerry(t, diskStore(t))
	dir := t.TempDir()
	out := filepath.Join(dir, "inbox")
	state := filepath.Join(dir, "state.json")
	first, firstData := writeJPEG(t, dir, "first.jpg", 3)
	second, secondData := writeJPEG(t, dir, "second.jpg", 4)
	args := []string{"--server", s.URL, "--room", "share", "--out", out, "--state", state}

	l := startListen(t, args...)
	if _, stderr, err := send(t, "--server", s.URL, "--room", "share", first); err != nil {
		t.Fatalf("send: %v\n%s", err, stderr)
	}
	waitFile(t, filepath.Join(out, "first.jpg"), firstData)
	waitOutput(t, &l.stderr, "saved ")
	l.stop(t)
	var saved struct {
		Rooms map[string]struct {
			Epoch string
			Seq   uint64
		}
	}
	if b, err := os.ReadFile(state); err != nil || json.Unmarshal(b, &saved) != nil || saved.Rooms["share"].Seq != 1 || saved.Rooms["share"].Epoch == "" {
		t.Fatalf("state file: %s (%v)", b, err)
	}

	// While nobody listens.
	if _, stderr, err := send(t, "--server", s.URL, "--room", "share", second); err != nil {
		t.Fatalf("send: %v\n%s", err, stderr)
	}
	if _, stderr, err := send(t, "--server", s.URL, "--room", "share", "--text", "while you were away"); err != nil {
		t.Fatalf("send: %v\n%s", err, stderr)
	}

	l = startListen(t, args...)
	waitFile(t, filepath.Join(out, "second.jpg"), secondData)
	waitOutput(t, &l.stdout, "while you were away")
	// The replayed events come before the join's ack, which prints this.
	waitOutput(t, &l.stderr, "2 missed events replayed")
	l.stop(t)
	if names := dirNames(t, out); !slices.Equal(names, []string{"first.jpg", "second.jpg"}) {
		t.Errorf("files in --out: %v, want each once", names)
	}
	var events []string
	for _, f := range frames(t, l.stdout.String()) {
		if f["t"] == "event" {
			events = append(events, f["event"].(string))
		}
	}
	if !slices.Equal(events, []string{"file", "chat"}) {
		t.Errorf("second run's events %v, want the file and the text, once each", events)
	}
}

func TestSafeName(t *testing.T) {
	long := strings.Repeat("é", 150) + ".jpg"
	tests := []struct{ in, want string }{
		{"cat.jpg", "cat.jpg"},
		{"../../etc/passwd", "passwd"},
		{`..\..\windows\system.ini`, "system.ini"},
		{"..", "file-f_1"},
		{".", "file-f_1"},
		{"", "file-f_1"},
		{"dir/", "file-f_1"},
		{".bashrc", "bashrc"},
		{"a\x00b\nc.txt", "abc.txt"},
		{"cat\u202egpj.exe", "catgpj.exe"},
		{"what?.txt", "what_.txt"},
		{" spaced ", "spaced"},
	}
	for _, tt := range tests {
		if got := safeName(tt.in, "f_1"); got != tt.want {
			t.Errorf("safeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := safeName(long, "f_1"); len(got) > maxNameBytes || !strings.HasSuffix(got, ".jpg") || !strings.HasPrefix(got, "éé") {
		t.Errorf("long name cut to %q (%d bytes)", got, len(got))
	}
}

func TestClaimName(t *testing.T) {
	dir := t.TempDir()
	var got []string
	for _, name := range []string{"a.txt", "a.txt", "a.txt", "noext", "noext", ".txt"} {
		p, err := claimName(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(p))
	}
	want := []string{"a.txt", "a (1).txt", "a (2).txt", "noext", "noext (1)", ".txt"}
	if !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	// A link in the way is not followed.
	target := filepath.Join(t.TempDir(), "target")
	if err := os.Symlink(target, filepath.Join(dir, "link.txt")); err != nil {
		t.Skip(err)
	}
	if p, err := claimName(dir, "link.txt"); err != nil || filepath.Base(p) != "link (1).txt" {
		t.Errorf("claim over a link: %s, %v", p, err)
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("the link was followed")
	}
}

// Members cannot forge a file announcement: the server refuses emits of the
// event "file", and listen saves only what the server's record vouches for.
func TestListenIgnoresForgedAnnouncements(t *testing.T) {
	s := startFileFerry(t, diskStore(t))
	dir := t.TempDir()
	out := filepath.Join(dir, "inbox")
	path, data := writeJPEG(t, dir, "real.jpg", 5)
	l := startListen(t, "--server", s.URL, "--room", "share", "--out", out)
	stdout, stderr, err := send(t, "--server", s.URL, "--room", "share", "--json", path)
	if err != nil {
		t.Fatalf("send: %v\n%s", err, stderr)
	}
	var real client.File
	if err := json.Unmarshal([]byte(stdout), &real); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(out, "real.jpg"), data)

	forger, _, _ := member(t, s.URL, "share", "forger")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	forged := real
	forged.SHA256 = strings.Repeat("0", 64)
	forged.Name = "../../evil.jpg"
	err = forger.Emit(ctx, "share", client.FileEvent, forged)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeInvalidEvent {
		t.Fatalf("forged announcement: %v, want invalid_event", err)
	}
	l.stop(t)
	if names := dirNames(t, out); !slices.Equal(names, []string{"real.jpg"}) {
		t.Errorf("files in --out: %v", names)
	}
	for _, p := range []string{filepath.Join(dir, "evil.jpg"), filepath.Join(filepath.Dir(dir), "evil.jpg")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s written", p)
		}
	}
}
