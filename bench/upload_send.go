package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// SendConfig configures Send. Zero values mean the defaults.
type SendConfig struct {
	// Size of the test file. Default 1 GiB.
	Size int64
	// Rounds of the three runs. Default 5: the median of five is what
	// tells ferry from the noise of a shared machine.
	Rounds int
	// Dir is where the test file is written. Default os.TempDir(). It
	// should be on disk, as a user's file is: on tmpfs the bench warns.
	Dir string
	// Ferry is the ferry executable, run as the server and as `ferry
	// send`. Empty means this process's own.
	Ferry string
	// S3 endpoint and credentials. Empty starts a MinIO child process.
	S3Endpoint, S3AccessKey, S3SecretKey string
	// ServerArgs are more flags for `ferry serve`, SendArgs for `ferry send`.
	ServerArgs, SendArgs []string
	// Progress receives one line per step.
	Progress io.Writer
}

func (c *SendConfig) defaults() {
	if c.Size == 0 {
		c.Size = 1 << 30
	}
	if c.Rounds == 0 {
		c.Rounds = 5
	}
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// The three ways a run stores the file.
const (
	// KindDirect is minio-go's PutObject of the open file, default options.
	KindDirect = "direct"
	// KindBinary is `ferry send FILE`: binary chunk frames.
	KindBinary = "binary"
	// KindBase64 is `ferry send --base64 FILE`: base64 text frames.
	KindBase64 = "base64"
)

// Buckets of the direct runs and of the server.
const (
	directBucket = "bench-direct"
	ferryBucket  = "bench-ferry"
)

// SendRun is one measured run.
type SendRun struct {
	Kind    string  `json:"kind"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_s"`
	// CPU seconds spent during the run by the uploading client (the `ferry
	// send` process, or the bench itself for a direct run), the ferry
	// server, MinIO, and everything else on the machine. A figure that
	// could not be read is -1.
	ClientCPU float64 `json:"client_cpu_s"`
	ServerCPU float64 `json:"server_cpu_s"`
	MinIOCPU  float64 `json:"minio_cpu_s"`
	OtherCPU  float64 `json:"other_cpu_s"`
	// Stored is the size of the object read back from MinIO; its SHA-256
	// matched the file's, or the run would have failed.
	Stored int64 `json:"stored_bytes"`
}

// SendRound is one run of each kind, in the order they ran, and the
// round's ratios of ferry's throughput to the direct one.
type SendRound struct {
	Runs        []SendRun `json:"runs"`
	BinaryRatio float64   `json:"binary_ratio"`
	Base64Ratio float64   `json:"base64_ratio"`
}

// Spread summarizes the rounds' values of one figure.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// SendResult holds Send's figures.
type SendResult struct {
	// CPUs is the machine's number of CPUs, which OtherCPU is shared with.
	CPUs   int         `json:"cpus"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
	Rounds []SendRound `json:"rounds"`
	// Throughput in MB/s, and ratios to the direct run of the same round.
	Direct      Spread `json:"direct_mb_s"`
	Binary      Spread `json:"binary_mb_s"`
	Base64      Spread `json:"base64_mb_s"`
	BinaryRatio Spread `json:"binary_ratio"`
	Base64Ratio Spread `json:"base64_ratio"`
	// The CPU the direct run of a round took (client and MinIO) over what
	// each of ferry's took (client, server and MinIO): the throughput
	// ratio the round would have had if both ways kept the machine's CPUs
	// as busy. Other processes change it less than the throughput ratio.
	BinaryCPURatio Spread `json:"binary_cpu_ratio"`
	Base64CPURatio Spread `json:"base64_cpu_ratio"`
}

// Send measures what a user gets: `ferry send` of a file on disk into MinIO
// through a ferry server, against minio-go's PutObject of the same file,
// in one run, against one MinIO. Each round runs the direct upload, `ferry
// send` and `ferry send --base64` once, in an order that alternates from
// round to round so that the machine's drifts spread over all three. Every
// run is timed from its start to its end (the `ferry send` process's exit),
// and every stored object is read back and checked, so that a broken upload
// cannot pass for a fast one.
func Send(ctx context.Context, cfg SendConfig) (SendResult, error) {
	cfg.defaults()
	res := SendResult{Size: cfg.Size, CPUs: runtime.NumCPU()}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Progress, format+"\n", args...) }
	if cfg.Ferry == "" {
		exe, err := os.Executable()
		if err != nil {
			return res, fmt.Errorf("find ferry executable: %w", err)
		}
		cfg.Ferry = exe
	}
	b := &sendBench{cfg: cfg, tag: strconv.FormatInt(time.Now().UnixNano(), 36)}
	defer b.close()
	if cfg.S3Endpoint == "" {
		m, err := startMinIO()
		if err != nil {
			return res, err
		}
		b.minio = m
		cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey = m.Endpoint, m.AccessKey, m.SecretKey
	}
	var err error
	if b.direct, err = newS3Direct(cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey); err != nil {
		return res, err
	}
	if err := b.direct.makeBucket(ctx, directBucket); err != nil {
		return res, fmt.Errorf("bucket %s: %w", directBucket, err)
	}
	if b.dir, err = os.MkdirTemp(cfg.Dir, "ferry-bench-send-"); err != nil {
		return res, err
	}
	if inMemoryFS(b.dir) {
		say("warning: %s is on tmpfs: the file is read from memory, not disk (give --dir)", b.dir)
	}
	say("writing %d MiB of random bytes to %s", cfg.Size>>20, b.dir)
	if b.file, res.SHA256, err = writeRandomFile(b.dir, cfg.Size); err != nil {
		return res, err
	}
	b.sum = res.SHA256
	if b.srv, err = StartServer(ctx, ServerConfig{Path: cfg.Ferry, Args: append([]string{
		"--s3-endpoint", cfg.S3Endpoint, "--s3-bucket", ferryBucket,
		"--s3-access-key", cfg.S3AccessKey, "--s3-secret-key", cfg.S3SecretKey,
		"--max-file-size", strconv.FormatInt(max(cfg.Size, 2<<30), 10),
		"--log-level", "warn",
	}, cfg.ServerArgs...)}); err != nil {
		return res, err
	}

	order := []string{KindDirect, KindBinary, KindBase64}
	for r := range cfg.Rounds {
		var round SendRound
		by := map[string]SendRun{}
		for _, kind := range order {
			run, err := b.run(ctx, r+1, kind)
			if err != nil {
				return res, fmt.Errorf("round %d, %s: %w\nend of the server's log:\n%s", r+1, kind, err, b.srv.LogTail(2048))
			}
			say("round %d: %-6s %6.0f MB/s  %.2fs", r+1, kind, run.MBps, run.Seconds)
			round.Runs = append(round.Runs, run)
			by[kind] = run
		}
		round.BinaryRatio = by[KindBinary].MBps / by[KindDirect].MBps
		round.Base64Ratio = by[KindBase64].MBps / by[KindDirect].MBps
		res.Rounds = append(res.Rounds, round)
		// The next round runs the other way round, so that no kind always
		// comes first (MinIO's disk fills, the machine's turbo fades).
		for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
			order[i], order[j] = order[j], order[i]
		}
	}
	res.summarize()
	return res, nil
}

// sendBench holds what Send's runs share.
type sendBench struct {
	cfg    SendConfig
	tag    string // tells this bench's rooms and keys apart from others'
	minio  *minio // nil when the endpoint was given
	direct *s3Direct
	srv    *Server
	dir    string // the test file and the send processes' cache folders
	file   string
	sum    string
}

func (b *sendBench) close() {
	if b.direct != nil {
		b.direct.close()
	}
	if b.srv != nil {
		_ = b.srv.Close()
	}
	if b.minio != nil {
		_ = b.minio.Close()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// run does one run of kind, checks what it stored and removes it.
func (b *sendBench) run(ctx context.Context, round int, kind string) (SendRun, error) {
	run := SendRun{Kind: kind}
	name := fmt.Sprintf("%s-%d-%s", b.tag, round, kind)
	settle()
	b.quiesce(ctx)
	before := b.sample()
	start := time.Now()
	var bucket, prefix string
	switch kind {
	case KindDirect:
		bucket, prefix = directBucket, name+"/"
		err := b.direct.put(ctx, bucket, prefix+"bench.bin", b.file, b.cfg.Size)
		if err != nil {
			return run, err
		}
	default:
		bucket, prefix = ferryBucket, "rooms/"+name+"/"
		client, err := b.send(ctx, name, kind == KindBase64)
		if err != nil {
			return run, err
		}
		run.ClientCPU = client.Seconds()
	}
	d := time.Since(start)
	after := b.sample()
	run.Seconds = d.Seconds()
	run.MBps = mbps(b.cfg.Size, d)
	if kind == KindDirect {
		run.ClientCPU = cpuDelta(before.self, after.self)
	}
	run.ServerCPU = cpuDelta(before.server, after.server)
	run.MinIOCPU = cpuDelta(before.minio, after.minio)
	run.OtherCPU = -1
	if before.machine >= 0 && after.machine >= 0 && run.ClientCPU >= 0 && run.ServerCPU >= 0 && run.MinIOCPU >= 0 {
		run.OtherCPU = max(0, (after.machine-before.machine).Seconds()-run.ClientCPU-run.ServerCPU-run.MinIOCPU)
	}

	obj, err := b.direct.only(ctx, bucket, prefix)
	if err != nil {
		return run, err
	}
	got, err := b.direct.check(ctx, bucket, obj.Key)
	if err != nil {
		return run, err
	}
	if got.Size != b.cfg.Size || obj.Size != b.cfg.Size || got.SHA256 != b.sum {
		return run, fmt.Errorf("stored %s/%s: %d bytes (listed %d), sha256 %s; want %d bytes, sha256 %s",
			bucket, obj.Key, got.Size, obj.Size, got.SHA256, b.cfg.Size, b.sum)
	}
	run.Stored = got.Size
	return run, b.direct.removeAll(ctx, bucket, prefix)
}

// Quiescence: before a run, MinIO and the server must have been idle for
// quietFor (less than quietCPU of CPU time in it), or quietMax have passed.
// MinIO frees a removed object's data in the background, and the previous
// run's clean-up must not be charged to the next.
const (
	quietFor = 250 * time.Millisecond
	quietCPU = 20 * time.Millisecond
	quietMax = 30 * time.Second
)

// quiesce waits for MinIO and the server to go idle, and says so when that
// took a while.
func (b *sendBench) quiesce(ctx context.Context) {
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > time.Second {
			fmt.Fprintf(b.cfg.Progress, "waited %.1fs for MinIO and the server to go idle\n", d.Seconds())
		}
	}()
	busy := func(a, z cpuSample) time.Duration {
		var d time.Duration
		if a.minio >= 0 && z.minio >= 0 {
			d += z.minio - a.minio
		}
		if a.server >= 0 && z.server >= 0 {
			d += z.server - a.server
		}
		return d
	}
	deadline := time.Now().Add(quietMax)
	prev := b.sample()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(quietFor):
		}
		next := b.sample()
		if busy(prev, next) < quietCPU {
			return
		}
		prev = next
	}
}

// send runs `ferry send --json` of the file to room, as a user would, and
// checks the stored file's record it prints. It returns the process's CPU
// time.
func (b *sendBench) send(ctx context.Context, room string, base64 bool) (time.Duration, error) {
	args := []string{"send", "--server", b.srv.URL, "--room", room, "--json"}
	if base64 {
		args = append(args, "--base64")
	}
	args = append(append(args, b.cfg.SendArgs...), b.file)
	cmd := exec.CommandContext(ctx, b.cfg.Ferry, args...)
	// A cache of its own per run: `ferry send` keeps resume state there,
	// and one run must not resume another's upload.
	cache := filepath.Join(b.dir, "cache-"+room)
	cmd.Env = append(withoutFerryEnv(os.Environ()), "FERRY_CACHE_DIR="+cache, "XDG_CACHE_HOME="+cache)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("ferry %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.Bytes(), 2048))
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var f struct {
		ID     string `json:"id"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &f); err != nil {
		return cpu, fmt.Errorf("ferry send printed %q, not a file record: %w", tail(stdout.Bytes(), 512), err)
	}
	if f.ID == "" || f.Size != b.cfg.Size || f.SHA256 != b.sum {
		return cpu, fmt.Errorf("ferry send announced file %q of %d bytes, sha256 %s; want %d bytes, sha256 %s", f.ID, f.Size, f.SHA256, b.cfg.Size, b.sum)
	}
	return cpu, nil
}

// withoutFerryEnv drops FERRY_* variables: every flag of `ferry send` can
// come from one (FERRY_ROOM, FERRY_SERVER...), and only the bench's
// arguments may configure it.
func withoutFerryEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "FERRY_") {
			out = append(out, kv)
		}
	}
	return out
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// cpuSample is the CPU time used so far by the processes of a run. A
// figure that could not be read is negative.
type cpuSample struct {
	self, server, minio, machine time.Duration
}

func (b *sendBench) sample() cpuSample {
	read := func(pid int) time.Duration {
		if pid == 0 {
			return -1
		}
		d, err := ReadCPU(pid)
		if err != nil {
			return -1
		}
		return d
	}
	s := cpuSample{self: read(os.Getpid()), server: read(b.srv.PID), minio: -1, machine: -1}
	if b.minio != nil {
		s.minio = read(b.minio.PID)
	}
	if m, err := ReadMachineCPU(); err == nil {
		s.machine = m.Busy
	}
	return s
}

func cpuDelta(a, b time.Duration) float64 {
	if a < 0 || b < 0 {
		return -1
	}
	return (b - a).Seconds()
}

// writeRandomFile writes size random bytes to a new file in dir, flushed to
// disk, and returns its path and hex SHA-256.
func writeRandomFile(dir string, size int64) (string, string, error) {
	path := filepath.Join(dir, "bench.bin")
	f, err := os.Create(path)
	if err != nil {
		return "", "", err
	}
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8(seed), size))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("write the test file: %w", err)
	}
	return path, hex.EncodeToString(h.Sum(nil)), nil
}
