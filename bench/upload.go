package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/s3"
)

// UploadConfig configures the upload bench. Zero values mean the defaults.
type UploadConfig struct {
	// Size of the single-file runs. Default 1 GiB.
	Size int64
	// Chunk is the binary chunk size (default 1 MiB); Base64Chunk the
	// text one (default 512 KiB, so that it fits a 1 MiB text frame).
	Chunk, Base64Chunk int
	// Concurrent uploads of ConcurrentSize each. Defaults 16 and 256 MiB.
	Concurrent     int
	ConcurrentSize int64
	// ChatEvery is how often a chat event is sent on the uploading
	// connection. Default 10ms.
	ChatEvery time.Duration
	// S3 endpoint and credentials. Empty starts a MinIO child process.
	S3Endpoint, S3AccessKey, S3SecretKey string
	// ServerArgs are more flags for the server.
	ServerArgs []string
	// ServerPath is the ferry executable to run as the server. Empty means
	// this process's own.
	ServerPath string
	// Progress receives one line per step.
	Progress io.Writer
}

// UploadResult holds the figures of one run.
type UploadResult struct {
	Size                int64   `json:"size"`
	DirectMBps          float64 `json:"direct_mb_s"`
	BinaryMBps          float64 `json:"binary_mb_s"`
	Base64MBps          float64 `json:"base64_mb_s"`
	BinaryRatio         float64 `json:"binary_ratio"`
	Base64Ratio         float64 `json:"base64_ratio"`
	Concurrent          int     `json:"concurrent"`
	ConcurrentSize      int64   `json:"concurrent_size"`
	ConcurrentMBps      float64 `json:"concurrent_mb_s"`
	ConcurrentPeakRSSMB float64 `json:"concurrent_peak_rss_mib"`
	OpenDataFiles       int     `json:"open_data_files"`
	// ConcurrentBusy counts the opens answered busy, then tried again.
	ConcurrentBusy int64   `json:"concurrent_busy"`
	ChatSamples    int     `json:"chat_samples"`
	ChatP50ms      float64 `json:"chat_p50_ms"`
	ChatP99ms      float64 `json:"chat_p99_ms"`
}

func (c *UploadConfig) defaults() {
	if c.Size == 0 {
		c.Size = 1 << 30
	}
	if c.Chunk == 0 {
		c.Chunk = 1 << 20
	}
	if c.Base64Chunk == 0 {
		c.Base64Chunk = 512 << 10
	}
	if c.Concurrent == 0 {
		c.Concurrent = 16
	}
	if c.ConcurrentSize == 0 {
		c.ConcurrentSize = 256 << 20
	}
	if c.ChatEvery == 0 {
		c.ChatEvery = 10 * time.Millisecond
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Upload measures, in one run and against one MinIO: a streamed upload of
// Size bytes through ferry's own S3 store, the same through ferry with the
// bench's lean protocol client over binary frames and over base64 text
// frames, Concurrent uploads at once (server peak memory), and chat latency
// on a connection that is uploading.
//
// Its throughput figures are not what a user gets: the reference is weaker
// than minio-go's PutObject of a file and the client is not `ferry send`.
// Send measures that; Upload stays for the memory and latency figures.
func Upload(ctx context.Context, cfg UploadConfig) (UploadResult, error) {
	cfg.defaults()
	res := UploadResult{Size: cfg.Size, Concurrent: cfg.Concurrent, ConcurrentSize: cfg.ConcurrentSize}
	if cfg.S3Endpoint == "" {
		m, err := startMinIO()
		if err != nil {
			return res, err
		}
		defer m.Close()
		cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey = m.Endpoint, m.AccessKey, m.SecretKey
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Progress, format+"\n", args...) }

	// Baseline: minio-go, through ferry's S3 store (one PUT of known size).
	direct, err := s3.New(ctx, s3.Config{Endpoint: cfg.S3Endpoint, Bucket: "bench-direct", AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey})
	if err != nil {
		return res, err
	}
	defer direct.Close()
	start := time.Now()
	if err := direct.Put(ctx, "direct.bin", newPattern(cfg.Size, 1), cfg.Size, storage.Meta{}); err != nil {
		return res, fmt.Errorf("direct upload: %w", err)
	}
	res.DirectMBps = mbps(cfg.Size, time.Since(start))
	say("direct minio-go upload of %d MiB: %.0f MB/s", cfg.Size>>20, res.DirectMBps)

	srv, err := StartServer(ctx, ServerConfig{Path: cfg.ServerPath, Args: append([]string{
		"--s3-endpoint", cfg.S3Endpoint, "--s3-bucket", "bench-ferry",
		"--s3-access-key", cfg.S3AccessKey, "--s3-secret-key", cfg.S3SecretKey,
		"--max-uploads", strconv.Itoa(max(4, cfg.Concurrent)), "--log-level", "warn",
		"--rate", "100000", "--rate-burst", "100000",
	}, cfg.ServerArgs...)})
	if err != nil {
		return res, err
	}
	defer srv.Close()

	for _, b64 := range []bool{false, true} {
		c, err := dialUploader(ctx, srv.URL, "bench")
		if err != nil {
			return res, err
		}
		sum := patternSHA(cfg.Size, 2)
		start := time.Now()
		err = c.upload(ctx, "bench", "big.bin", newPattern(cfg.Size, 2), cfg.Size, sum, pick(b64, cfg.Base64Chunk, cfg.Chunk), b64)
		d := time.Since(start)
		c.close()
		if err != nil {
			return res, fmt.Errorf("upload (base64 %v): %w", b64, err)
		}
		if b64 {
			res.Base64MBps = mbps(cfg.Size, d)
			res.Base64Ratio = res.Base64MBps / res.DirectMBps
			say("ferry, base64 text frames: %.0f MB/s = %.0f%% of direct", res.Base64MBps, 100*res.Base64Ratio)
		} else {
			res.BinaryMBps = mbps(cfg.Size, d)
			res.BinaryRatio = res.BinaryMBps / res.DirectMBps
			say("ferry, binary frames: %.0f MB/s = %.0f%% of direct", res.BinaryMBps, 100*res.BinaryRatio)
		}
	}

	if err := concurrentUploads(ctx, cfg, srv, &res); err != nil {
		return res, err
	}
	say("%d concurrent uploads of %d MiB: %.0f MB/s in all, server peak RSS %.0f MiB, %d data files open, %d opens told busy (and retried)",
		cfg.Concurrent, cfg.ConcurrentSize>>20, res.ConcurrentMBps, res.ConcurrentPeakRSSMB, res.OpenDataFiles, res.ConcurrentBusy)

	if err := chatWhileUploading(ctx, cfg, srv, &res); err != nil {
		return res, err
	}
	say("chat on an uploading connection: %d events, p50 %.1f ms, p99 %.1f ms", res.ChatSamples, res.ChatP50ms, res.ChatP99ms)
	return res, nil
}

func concurrentUploads(ctx context.Context, cfg UploadConfig, srv *Server, res *UploadResult) error {
	var peak int64
	var openFiles int
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := ReadMemory(srv.PID); err == nil && m.RSS > peak {
				peak = m.RSS
			}
			if n := openDataFiles(srv.PID); n > openFiles {
				openFiles = n
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	sums := make([]string, cfg.Concurrent)
	for i := range sums {
		sums[i] = patternSHA(cfg.ConcurrentSize, uint64(10+i))
	}
	start := time.Now()
	var busy atomic.Int64
	errs := make(chan error, cfg.Concurrent)
	for i := 0; i < cfg.Concurrent; i++ {
		go func() {
			c, err := dialUploader(ctx, srv.URL, fmt.Sprintf("many-%d", i))
			if err != nil {
				errs <- err
				return
			}
			defer c.close()
			err = c.upload(ctx, "bench", fmt.Sprintf("part-%02d.bin", i), newPattern(cfg.ConcurrentSize, uint64(10+i)), cfg.ConcurrentSize, sums[i], cfg.Chunk, false)
			busy.Add(c.busy.Load())
			errs <- err
		}()
	}
	var first error
	for i := 0; i < cfg.Concurrent; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	d := time.Since(start)
	close(stop)
	<-sampled
	if first != nil {
		return fmt.Errorf("concurrent uploads: %w", first)
	}
	if m, err := ReadMemory(srv.PID); err == nil && m.HWM > peak {
		peak = m.HWM
	}
	res.ConcurrentMBps = mbps(int64(cfg.Concurrent)*cfg.ConcurrentSize, d)
	res.ConcurrentPeakRSSMB = float64(peak) / (1 << 20)
	res.OpenDataFiles = openFiles
	res.ConcurrentBusy = busy.Load()
	return nil
}

// openDataFiles counts the regular files the server holds open, besides its
// log and the store of its embedded NATS server (the message blocks of its
// streams, rooms' state): uploads must not need temporary files.
func openDataFiles(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || len(target) == 0 || target[0] != '/' {
			continue // sockets, pipes, anonymous inodes
		}
		if filepath.Base(target) == "server.log" || strings.HasPrefix(target, "/dev/") ||
			strings.HasPrefix(target, "/sys/") || strings.HasPrefix(target, "/proc/") {
			continue // the log, terminals, and the runtime's cgroup files
		}
		if strings.Contains(target, "/.ferry/nats/") {
			continue
		}
		n++
	}
	return n
}

func chatWhileUploading(ctx context.Context, cfg UploadConfig, srv *Server, res *UploadResult) error {
	c, err := dialUploader(ctx, srv.URL, "chatty")
	if err != nil {
		return err
	}
	defer c.close()
	done := make(chan error, 1)
	sum := patternSHA(cfg.Size/2, 3)
	go func() {
		done <- c.upload(ctx, "bench", "while-chatting.bin", newPattern(cfg.Size/2, 3), cfg.Size/2, sum, cfg.Chunk, false)
	}()
	t := time.NewTicker(cfg.ChatEvery)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			lat := c.chatLatencies()
			res.ChatSamples = len(lat)
			if len(lat) > 0 {
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				res.ChatP50ms = ms(lat[len(lat)/2])
				res.ChatP99ms = ms(lat[min(len(lat)-1, len(lat)*99/100)])
			}
			return err
		case <-t.C:
			if err := c.chat("bench"); err != nil {
				return err
			}
		}
	}
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

func pick[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// pattern is a reader of n pseudo-random bytes: a 1 MiB random block
// repeated with a rotating start, so nothing is held whole and every run
// sends the same bytes for the same seed.
type pattern struct {
	block []byte
	n     int64
	pos   int64
}

func newPattern(n int64, seed uint64) *pattern {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return &pattern{block: b, n: n}
}

// patternSHA is the hex SHA-256 of newPattern(n, seed).
func patternSHA(n int64, seed uint64) string {
	h := sha256.New()
	_, _ = io.Copy(h, newPattern(n, seed))
	return hex.EncodeToString(h.Sum(nil))
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.pos >= p.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(b) && p.pos < p.n {
		off := int((p.pos + p.pos>>20) % int64(len(p.block)))
		c := copy(b[k:], p.block[off:])
		c = int(min(int64(c), p.n-p.pos))
		k += c
		p.pos += int64(c)
	}
	return k, nil
}

// uploader is a lean protocol client: one connection, writes under a lock,
// one reader goroutine.
type uploader struct {
	ws  *websocket.Conn
	wmu sync.Mutex

	mu       sync.Mutex
	nextID   uint64
	acks     map[uint64]chan wireFrame
	progress map[string]*progressChan
	lat      []time.Duration
	readErr  error
	done     chan struct{}
	// busy counts the upload.open answered busy.
	busy atomic.Int64
}

// progressChan carries an upload's frames to its uploader; gone is closed
// when the uploader stopped listening, so that the reader never waits for it.
type progressChan struct {
	ch   chan upEvent
	gone chan struct{}
}

type upEvent struct {
	durable int64
	done    bool
	err     error
}

type wireFrame struct {
	T       string `json:"t"`
	ID      uint64 `json:"id"`
	Upload  string `json:"upload"`
	Offset  int64  `json:"offset"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfterMS comes with busy.
	RetryAfterMS int64           `json:"retry_after_ms"`
	Data         json.RawMessage `json:"data"`
	Event        string          `json:"event"`
}

func dialUploader(ctx context.Context, url, name string) (*uploader, error) {
	ws, _, err := newDialer(64<<10, 1<<20).DialContext(ctx, url+"?name="+name, nil)
	if err != nil {
		return nil, err
	}
	u := &uploader{ws: ws, acks: make(map[uint64]chan wireFrame), progress: make(map[string]*progressChan), done: make(chan struct{})}
	go u.read()
	if _, err := u.request(ctx, map[string]any{"t": "join", "room": "bench"}); err != nil {
		u.close()
		return nil, err
	}
	return u, nil
}

func (u *uploader) read() {
	defer close(u.done)
	for {
		_, b, err := u.ws.ReadMessage()
		if err != nil {
			u.mu.Lock()
			u.readErr = err
			for _, p := range u.progress {
				select {
				case p.ch <- upEvent{err: err}:
				default: // the uploader also watches done
				}
			}
			u.mu.Unlock()
			return
		}
		var f wireFrame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		u.mu.Lock()
		switch {
		case (f.T == protocol.TypeAck || f.T == protocol.TypeError) && f.ID != 0:
			if ch := u.acks[f.ID]; ch != nil {
				ch <- f // buffered: one answer per request
				delete(u.acks, f.ID)
			}
		case f.T == "event" && f.Event == "chat":
			var d struct{ Sent int64 }
			if json.Unmarshal(f.Data, &d) == nil && d.Sent > 0 {
				u.lat = append(u.lat, time.Duration(time.Now().UnixNano()-d.Sent))
			}
		case f.Upload != "":
			if p := u.progress[f.Upload]; p != nil {
				ev := upEvent{durable: f.Offset, done: f.T == protocol.TypeUploadDone}
				if f.T == protocol.TypeError && f.Code != protocol.CodeStorageUnavailable {
					ev.err = fmt.Errorf("%s: %s", f.Code, f.Message)
				}
				u.mu.Unlock()
				select {
				case p.ch <- ev: // the uploader drains its channel between chunks
				case <-p.gone:
				}
				continue
			}
		}
		u.mu.Unlock()
	}
}

func (u *uploader) write(mt int, b []byte) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	_ = u.ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return u.ws.WriteMessage(mt, b)
}

func (u *uploader) request(ctx context.Context, frame map[string]any) (json.RawMessage, error) {
	u.mu.Lock()
	u.nextID++
	id := u.nextID
	ch := make(chan wireFrame, 1)
	u.acks[id] = ch
	u.mu.Unlock()
	frame["id"] = id
	b, _ := json.Marshal(frame)
	if err := u.write(websocket.TextMessage, b); err != nil {
		return nil, err
	}
	select {
	case f := <-ch:
		if f.T == protocol.TypeError {
			return nil, &protocol.Error{Code: f.Code, Message: f.Message, RetryAfter: f.RetryAfterMS}
		}
		return f.Data, nil
	case <-u.done:
		return nil, u.readErr
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (u *uploader) chat(room string) error {
	b, _ := json.Marshal(map[string]any{"t": "emit", "room": room, "event": "chat", "data": map[string]int64{"sent": time.Now().UnixNano()}})
	return u.write(websocket.TextMessage, b)
}

func (u *uploader) chatLatencies() []time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]time.Duration(nil), u.lat...)
}

// upload sends one file and waits for upload.done, keeping within the
// granted window.
//
// The file's SHA-256 is declared, as `ferry send` does: sum is computed by
// the caller before the clock starts.
func (u *uploader) upload(ctx context.Context, room, name string, r io.Reader, size int64, sum string, chunk int, b64 bool) error {
	d, err := u.open(ctx, map[string]any{"t": "upload.open", "room": room, "name": name, "size": size, "sha256": sum, "chunk_size": chunk})
	if err != nil {
		return err
	}
	var g struct {
		Upload    string `json:"upload"`
		Window    int64  `json:"window"`
		ChunkSize int    `json:"chunk_size"`
	}
	if err := json.Unmarshal(d, &g); err != nil {
		return err
	}
	events := make(chan upEvent, 64)
	p := &progressChan{ch: events, gone: make(chan struct{})}
	u.mu.Lock()
	u.progress[g.Upload] = p
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.progress, g.Upload)
		u.mu.Unlock()
		close(p.gone)
	}()
	buf := make([]byte, 0, 2+len(g.Upload)+8+g.ChunkSize)
	var text []byte
	var sent, durable int64
	finished := false
	handle := func(ev upEvent) error {
		if ev.err != nil {
			return ev.err
		}
		durable = max(durable, ev.durable)
		finished = finished || ev.done
		return nil
	}
	for sent < size {
		n := int64(g.ChunkSize)
		if sent+n > size {
			n = size - sent
		}
		for sent+n-durable > g.Window {
			select {
			case ev := <-events:
				if err := handle(ev); err != nil {
					return err
				}
			case <-u.done:
				return errors.Join(errors.New("connection closed while waiting for progress"), u.readErr)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		buf = protocol.AppendChunkHeader(buf[:0], protocol.ChunkHeader{Upload: g.Upload, Offset: sent})
		hdr := len(buf)
		buf = buf[:hdr+int(n)]
		if _, err := io.ReadFull(r, buf[hdr:]); err != nil {
			return err
		}
		if b64 {
			text = protocol.AppendTextChunk(text[:0], g.Upload, sent, buf[hdr:])
			err = u.write(websocket.TextMessage, text)
		} else {
			err = u.write(websocket.BinaryMessage, buf)
		}
		if err != nil {
			return err
		}
		sent += n
	drain:
		for {
			select {
			case ev := <-events:
				if err := handle(ev); err != nil {
					return err
				}
			default:
				break drain
			}
		}
	}
	for !finished {
		select {
		case ev := <-events:
			if err := handle(ev); err != nil {
				return err
			}
		case <-u.done:
			return errors.Join(errors.New("connection closed before upload.done"), u.readErr)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Bounds of the wait after busy, whatever retry_after_ms says.
const (
	busyWaitMin = 10 * time.Millisecond
	busyWaitMax = time.Second
)

// open sends upload.open until the server has part memory for the upload:
// it answers busy, with when to try again, while other uploads hold it all
// (--part-memory), as ferry's client expects.
func (u *uploader) open(ctx context.Context, frame map[string]any) (json.RawMessage, error) {
	for {
		d, err := u.request(ctx, frame)
		var perr *protocol.Error
		if !errors.As(err, &perr) || perr.Code != protocol.CodeBusy {
			return d, err
		}
		u.busy.Add(1)
		t := time.NewTimer(min(max(time.Duration(perr.RetryAfter)*time.Millisecond, busyWaitMin), busyWaitMax))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

func (u *uploader) close() {
	_ = u.ws.Close()
	<-u.done
}
