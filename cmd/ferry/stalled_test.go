package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/protocol"
)

// servedFerry is "ferry serve" running as a process of its own, built
// without the race detector so that its memory is what users see.
type servedFerry struct {
	cmd  *exec.Cmd
	addr string
}

func startServedFerry(t *testing.T, bin string, args ...string) *servedFerry {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(bin, append([]string{"serve", "--addr", addr, "--data", t.TempDir(), "--log-level", "warn"}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &servedFerry{cmd: cmd, addr: addr}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
			res.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("ferry serve did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *servedFerry) rss(t *testing.T) int64 {
	t.Helper()
	m, err := bench.ReadMemory(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return m.RSS
}

// metric reads one value from /metrics.
func (p *servedFerry) metric(t *testing.T, name string) int64 {
	t.Helper()
	return ferrytest.Metric(t, "http://"+p.addr, name)
}

// stallConn is one connection of the stalled-uploads test, speaking the
// protocol directly.
type stallConn struct {
	ws     *websocket.Conn
	nextID uint64
}

func (c *stallConn) request(f map[string]any) (map[string]any, error) {
	c.nextID++
	f["id"] = c.nextID
	if err := c.ws.WriteJSON(f); err != nil {
		return nil, err
	}
	return c.await(func(r map[string]any) bool {
		return (r["t"] == "ack" || r["t"] == "error") && r["id"] == float64(c.nextID)
	})
}

// await reads until a frame that match accepts, dropping the others.
func (c *stallConn) await(match func(map[string]any) bool) (map[string]any, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var r map[string]any
		if err := c.ws.ReadJSON(&r); err != nil {
			return nil, err
		}
		if match(r) {
			return r, nil
		}
	}
}

func (c *stallConn) chunk(id string, off int, b []byte) error {
	msg := protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: id, Offset: int64(off)})
	return c.ws.WriteMessage(websocket.BinaryMessage, append(msg, b...))
}

// finish sends data from off and waits for upload.done.
func (c *stallConn) finish(id string, off int, data []byte) error {
	for ; off < len(data); off += 256 << 10 {
		if err := c.chunk(id, off, data[off:min(off+256<<10, len(data))]); err != nil {
			return err
		}
	}
	r, err := c.await(func(r map[string]any) bool {
		return r["upload"] == id && (r["t"] == "upload.done" || r["t"] == "error")
	})
	if err == nil && r["t"] != "upload.done" {
		err = fmt.Errorf("upload %s: %v", id, r)
	}
	return err
}

// open opens a new upload, or resumes one, waiting while the server is
// busy; it returns the grant.
func (c *stallConn) open(req map[string]any) (map[string]any, error) {
	for {
		r, err := c.request(req)
		if err != nil {
			return nil, err
		}
		if r["t"] == "ack" {
			return r["data"].(map[string]any), nil
		}
		if r["code"] != protocol.CodeBusy {
			return nil, fmt.Errorf("open: %v", r)
		}
		time.Sleep(time.Duration(r["retry_after_ms"].(float64)) * time.Millisecond)
	}
}

// 200 uploads that stall with bytes in their part buffers: the server's
// memory stays within --part-memory (the uploads beyond it are told to
// wait), the stalled ones give their buffers back after --upload-idle, and
// every upload then resumes and completes.
func TestStalledUploadsStayWithinPartMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the server's memory from /proc")
	}
	const (
		conns, perConn = 20, 10
		size, stallAt  = 3 << 19, 1 << 20 // 1.5 MiB files, stalled after 1 MiB
		partMemory     = 64 << 20
	)
	srv := startServedFerry(t, testenv.Ferry(t), "--part-memory", strconv.Itoa(partMemory),
		"--upload-idle", "5s", "--max-uploads", strconv.Itoa(perConn), "--rate", "1000", "--rate-burst", "1000")
	base := srv.rss(t)
	data := randomData(size)

	type stalled struct {
		id       string
		admitted bool
	}
	cs := make([]*stallConn, conns)
	ups := make([][]stalled, conns)
	var mu sync.Mutex
	admitted, busy := 0, 0
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws?name=staller", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		cs[i] = &stallConn{ws: ws}
		wg.Go(func() {
			c := cs[i]
			if _, err := c.request(map[string]any{"t": "join", "room": "lobby"}); err != nil {
				errs <- err
				return
			}
			for j := range perConn {
				r, err := c.request(map[string]any{"t": "upload.open", "room": "lobby", "name": fmt.Sprintf("s%d-%d.bin", i, j), "size": size})
				if err != nil {
					errs <- err
					return
				}
				if r["t"] == "error" {
					if r["code"] != protocol.CodeBusy {
						errs <- fmt.Errorf("open: %v", r)
						return
					}
					mu.Lock()
					busy++
					mu.Unlock()
					ups[i] = append(ups[i], stalled{})
					continue
				}
				id := r["data"].(map[string]any)["upload"].(string)
				if err := c.chunk(id, 0, data[:stallAt]); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				admitted++
				mu.Unlock()
				ups[i] = append(ups[i], stalled{id: id, admitted: true})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the last chunks are read
	held := srv.metric(t, "ferry_upload_part_memory_bytes")
	peak := srv.rss(t)
	t.Logf("%d uploads stalled holding %d MiB of part memory, %d told to wait; server RSS %d MiB at start, %d MiB stalled (cap %d MiB)",
		admitted, held>>20, busy, base>>20, peak>>20, partMemory>>20)
	if held > partMemory || busy == 0 || admitted == 0 {
		t.Fatalf("part memory %d with %d admitted and %d busy: the cap %d does not hold", held, admitted, busy, partMemory)
	}
	if limit := base + partMemory + 48<<20; peak > limit {
		t.Errorf("server RSS %d MiB, over %d MiB (start + --part-memory + 48 MiB)", peak>>20, limit>>20)
	}

	// After --upload-idle the stalled uploads let go of their buffers.
	deadline := time.Now().Add(15 * time.Second)
	for srv.metric(t, "ferry_upload_part_memory_bytes") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stalled uploads still hold %d bytes of part memory", srv.metric(t, "ferry_upload_part_memory_bytes"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every upload resumes (or, if it was told to wait, opens) and
	// completes.
	errs = make(chan error, conns)
	for i := range conns {
		wg.Go(func() {
			c := cs[i]
			for j, u := range ups[i] {
				req := map[string]any{"t": "upload.open", "room": "lobby", "name": fmt.Sprintf("s%d-%d.bin", i, j), "size": size}
				if u.admitted {
					// Its next chunk is told to resume.
					if err := c.chunk(u.id, stallAt, data[stallAt:]); err != nil {
						errs <- err
						return
					}
					r, err := c.await(func(r map[string]any) bool { return r["t"] == "error" && r["upload"] == u.id })
					if err != nil || r["code"] != protocol.CodeUnknownUpload {
						errs <- fmt.Errorf("chunk of a paused upload: %v %v", r, err)
						return
					}
					req = map[string]any{"t": "upload.open", "resume": u.id}
				}
				g, err := c.open(req)
				if err != nil {
					errs <- err
					return
				}
				if err := c.finish(g["upload"].(string), int(g["offset"].(float64)), data); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := srv.metric(t, "ferry_uploads_completed_total"); n != conns*perConn {
		t.Fatalf("%d uploads completed, want %d", n, conns*perConn)
	}
}
