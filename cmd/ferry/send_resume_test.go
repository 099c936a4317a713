package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer"
)

// runMainEnv makes the test binary run as "ferry" itself: the tests that
// kill a send run it as a process of its own.
const runMainEnv = "FERRY_TEST_RUN_MAIN"

func init() {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	// The tests never touch the user's cache folder: the ones about
	// resuming turn it on with a folder of their own.
	if _, ok := os.LookupEnv("FERRY_RESUME"); !ok {
		os.Setenv("FERRY_RESUME", "false")
	}
}

// ferryProcess is "ferry" running as a process of its own.
type ferryProcess struct {
	cmd            *exec.Cmd
	stdout, stderr safeBuffer
	done           chan struct{}
}

func startFerryProcess(t *testing.T, env []string, args ...string) *ferryProcess {
	t.Helper()
	p := &ferryProcess{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	p.cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// exit waits for the process and returns its exit code (-1: a signal
// ended it).
func (p *ferryProcess) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(2 * time.Minute):
		t.Fatalf("ferry %s did not end\nstderr: %s", strings.Join(p.cmd.Args[1:], " "), p.stderr.String())
		return 0
	}
}

// uploadBytes reads the server's count of chunk bytes received.
func uploadBytes(t *testing.T, base string) int64 {
	t.Helper()
	return ferrytest.Metric(t, base, "ferry_upload_bytes_total")
}

// waitCut waits for link to have cut a connection of p.
func waitCut(t *testing.T, link *ferrytest.Proxy, p *ferryProcess) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for link.Cuts() == 0 {
		select {
		case <-p.done:
			t.Fatalf("send ended before the link was cut\nstderr: %s", p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the link was not cut\nstderr: %s", p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sendScene is a server with a disk store behind a link that tests cut,
// and the "ferry send" command of files to room backup through it, with a
// resume state of its own.
type sendScene struct {
	srv   *ferrytest.Ferry
	link  *ferrytest.Proxy
	cache string
	env   []string
	args  []string
}

func newSendScene(t *testing.T, files ...string) *sendScene {
	t.Helper()
	srv := ferrytest.Start(t, ferrytest.DiskStore(t), transfer.Config{PartSize: storage.MinPartSize}, server.Config{})
	sc := &sendScene{srv: srv, link: ferrytest.NewProxy(t, strings.TrimPrefix(srv.URL, "http://")), cache: t.TempDir()}
	sc.env = []string{"FERRY_CACHE_DIR=" + sc.cache, "FERRY_RESUME=true"}
	sc.args = append([]string{"send", "--server", "http://" + sc.link.Addr, "--room", "backup", "--name", "phone"}, files...)
	return sc
}

// stopped runs the command until the link drops after cutAt bytes and
// then goes quiet (the phone loses its network, then its app), stops it
// with sig, and heals the link. It returns the ended process.
func (sc *sendScene) stopped(t *testing.T, cutAt int64, sig os.Signal) *ferryProcess {
	t.Helper()
	sc.link.CutAfterRandom(cutAt, cutAt, 1)
	p := startFerryProcess(t, sc.env, sc.args...)
	waitCut(t, sc.link, p)
	sc.link.Stall()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	p.exit(t)
	sc.link.Cut()
	sc.link.CutAfterRandom(1<<50, 1<<50, 1) // no more cuts
	sc.link.Resume()
	return p
}

// again runs the command once more, to its end.
func (sc *sendScene) again(t *testing.T) *ferryProcess {
	t.Helper()
	p := startFerryProcess(t, sc.env, sc.args...)
	if code := p.exit(t); code != 0 {
		t.Fatalf("ferry send again: exit code %d\nstderr: %s", code, p.stderr.String())
	}
	return p
}

var interruptHint = regexp.MustCompile(`ferry: interrupted: run the same command again to resume big\.bin \(at least \d+\.\d MiB of 48\.0 MiB received\)`)

// "ferry send" stopped in the middle of a file, by Ctrl-C or by a kill it
// cannot catch, resumes when run again: it says so, sends again nothing
// the server had received whole, and the file arrives whole. (Ctrl-C
// while chunks flow is Upload's KeepOnCancel, tested in package client.)
func TestSendResumesAfterBeingStopped(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, os.Kill} {
		t.Run(sig.String(), func(t *testing.T) {
			data := randomData(48 << 20)
			sc := newSendScene(t, writeFile(t, t.TempDir(), "big.bin", data))
			// Half a part past a part's end: what was on its way is lost,
			// the server holds more than it stored.
			first := sc.stopped(t, int64(4*storage.MinPartSize+storage.MinPartSize/2), sig)
			code := first.cmd.ProcessState.ExitCode()
			switch {
			case sig == os.Interrupt && (code != 130 || !interruptHint.MatchString(first.stderr.String())):
				t.Errorf("after Ctrl-C: exit code %d, stderr:\n%s\nwant 130 and a line matching %s", code, first.stderr.String(), interruptHint)
			case sig == os.Kill && code != -1:
				t.Errorf("after a kill: exit code %d", code)
			}
			if es := openResumeState(sc.cache).load(); len(es) != 1 || es[0].Upload == "" || es[0].Name != "big.bin" {
				t.Fatalf("unfinished uploads remembered: %+v, want big.bin's", es)
			}

			watcher, events, _ := member(t, sc.srv.URL, "backup", "watcher")
			second := sc.again(t)
			if !strings.Contains(second.stderr.String(), "ferry: resuming big.bin at ") {
				t.Errorf("the second send did not say it resumed; stderr:\n%s", second.stderr.String())
			}
			// The server keeps every chunk it received whole, stored or not
			// (docs/protocol.md, "Reconnecting and resuming"): only the one
			// the stop cut off goes again. Going back to the durable offset
			// would resend up to a part.
			if resent := uploadBytes(t, sc.srv.URL) - int64(len(data)); resent > transfer.DefaultMaxChunk {
				t.Errorf("%d bytes sent again; want at most a chunk (%d), nothing the server had received whole\nthe second send said:\n%s",
					resent, transfer.DefaultMaxChunk, second.stderr.String())
			}
			if es := openResumeState(sc.cache).load(); len(es) != 0 {
				t.Errorf("still remembered once stored: %+v", es)
			}
			if got := downloadSHA(t, watcher, events); got != sha256Hex(data) {
				t.Errorf("downloaded file's SHA-256 %s, want %s", got, sha256Hex(data))
			}
		})
	}
}

// downloadSHA waits for a file announced in events and returns the
// SHA-256 of its bytes as c downloads them.
func downloadSHA(t *testing.T, c *client.Client, events <-chan client.Event) string {
	t.Helper()
	for {
		e := receive(t, events)
		if e.Name != client.FileEvent {
			continue
		}
		var f client.File
		if err := e.Decode(&f); err != nil {
			t.Fatal(err)
		}
		return fileSHA(t, c, f)
	}
}

// fileSHA returns the SHA-256 of f's bytes as c downloads them.
func fileSHA(t *testing.T, c *client.Client, f client.File) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h := sha256.New()
	if _, err := c.Download(ctx, f, h); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// "ferry send" of several files, stopped after storing some, skips those
// when run again: the room gets every file once. Once the command has been
// through all its files, running it again sends them all again.
func TestSendAgainSkipsFilesStored(t *testing.T) {
	dir := t.TempDir()
	data := randomData(48 << 20)
	sc := newSendScene(t, writeFile(t, dir, "note.txt", []byte("sent before the big one\n")), writeFile(t, dir, "big.bin", data))
	watcher, events, _ := member(t, sc.srv.URL, "backup", "watcher")

	first := sc.stopped(t, int64(4*storage.MinPartSize+storage.MinPartSize/2), os.Interrupt)
	if code := first.cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("after Ctrl-C: exit code %d\nstderr: %s", code, first.stderr.String())
	}
	stored := regexp.MustCompile(`note\.txt: stored as (f_\w+) `).FindStringSubmatch(first.stdout.String())
	if stored == nil {
		t.Fatalf("the first send did not store note.txt; stdout:\n%s", first.stdout.String())
	}

	second := sc.again(t)
	if want := "note.txt: stored as " + stored[1] + " "; !strings.Contains(second.stdout.String(), want) ||
		!strings.Contains(second.stdout.String(), "by the run that was stopped") {
		t.Errorf("the second send's stdout:\n%s\nwant note.txt reported as %s, stored by the run that was stopped", second.stdout.String(), stored[1])
	}
	if !strings.Contains(second.stderr.String(), "ferry: resuming big.bin at ") {
		t.Errorf("the second send did not resume big.bin; stderr:\n%s", second.stderr.String())
	}
	if es := openResumeState(sc.cache).load(); len(es) != 0 {
		t.Errorf("still remembered once the command went through: %+v", es)
	}
	// The room heard of each file once: note.txt, then big.bin.
	var names []string
	for len(names) < 2 {
		e := receive(t, events)
		if e.Name != client.FileEvent {
			continue
		}
		var f client.File
		if err := e.Decode(&f); err != nil {
			t.Fatal(err)
		}
		names = append(names, f.Name)
		if f.Name == "big.bin" {
			if got := fileSHA(t, watcher, f); got != sha256Hex(data) {
				t.Errorf("big.bin downloaded with SHA-256 %s, want %s", got, sha256Hex(data))
			}
		}
	}
	if strings.Join(names, " ") != "note.txt big.bin" {
		t.Errorf("files announced %v, want note.txt then big.bin, once each", names)
	}

	third := sc.again(t)
	if strings.Contains(third.stdout.String(), stored[1]) || strings.Count(third.stdout.String(), "stored as") != 2 {
		t.Errorf("the third send's stdout:\n%s\nwant both files sent anew", third.stdout.String())
	}
}

// A file changed since the stopped run began its upload is sent from the
// start, says so, and that upload is canceled on the server.
func TestSendAgainAfterFileChanged(t *testing.T) {
	data := randomData(24 << 20)
	path := writeFile(t, t.TempDir(), "big.bin", data)
	sc := newSendScene(t, path)
	sc.stopped(t, int64(2*storage.MinPartSize), os.Kill)
	if es := openResumeState(sc.cache).load(); len(es) != 1 {
		t.Fatalf("unfinished uploads remembered: %+v, want big.bin's", es)
	}

	data = append(data, "and a line more\n"...)
	writeFile(t, filepath.Dir(path), "big.bin", data)
	watcher, events, _ := member(t, sc.srv.URL, "backup", "watcher")
	second := sc.again(t)
	if out := second.stderr.String(); !strings.Contains(out, "big.bin changed since the run that was stopped: sending it from the start") ||
		strings.Contains(out, "stays on the server") || strings.Contains(out, "resuming") {
		t.Errorf("the second send's stderr:\n%s\nwant it to say big.bin changed, and cancel the earlier upload", out)
	}
	if got := downloadSHA(t, watcher, events); got != sha256Hex(data) {
		t.Errorf("downloaded SHA-256 %s, want the changed file's %s", got, sha256Hex(data))
	}
	if es := openResumeState(sc.cache).load(); len(es) != 0 {
		t.Errorf("still remembered once stored: %+v", es)
	}
}
