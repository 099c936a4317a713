package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// MinIOBinEnv names the environment variable that points at a minio binary.
const MinIOBinEnv = "FERRY_MINIO_BIN"

// How long MinIO gets to come up, and to shut down before it is killed. It
// is usually ready within a second or two; the margin is for loaded CI
// machines and the race detector.
const (
	minioStartTimeout = 60 * time.Second
	minioStopTimeout  = 10 * time.Second
)

// MinIOServer is a MinIO process started for tests, listening on 127.0.0.1.
// Stop or Kill it and Start it again to test how ferry lives through storage
// outages: it comes back on the same address with the same data.
type MinIOServer struct {
	// Endpoint is the server's URL, such as "http://127.0.0.1:41234".
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string

	bin, dir, addr, consoleAddr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// StartMinIO starts a MinIO of the test's own, with its data in t.TempDir(),
// and stops it when the test ends. It skips or fails the test, as Require
// does, when no minio binary is found (see FindMinIO).
func StartMinIO(t testing.TB) *MinIOServer {
	t.Helper()
	bin := minioBin(t)
	if bin == "" {
		return nil
	}
	m, err := newMinIO(bin, t.TempDir())
	if err == nil {
		err = m.Start()
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: end of the MinIO log:\n%s", m.LogTail(4096))
		}
		if err := m.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return m
}

// shared is the MinIO that MinIO hands out to every test of the binary.
var shared struct {
	once sync.Once
	srv  *MinIOServer
	dir  string
	err  error
}

// MinIO returns the address and credentials of a MinIO shared by all the
// tests of the test binary, started on first use; starting one takes a second
// or two. Tests sharing it must use buckets or key prefixes of their own, and
// must not stop it: use StartMinIO for that. It skips or fails the test, as
// Require does, when no minio binary is found.
//
// The server is stopped by StopShared, which Shared arranges to call after
// the tests; without it the server dies with the test binary (on Linux) but
// leaves its data folder behind.
func MinIO(t testing.TB) (endpoint, accessKey, secretKey string) {
	t.Helper()
	bin := minioBin(t)
	if bin == "" {
		return "", "", ""
	}
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "ferry-minio-")
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = newMinIO(bin, shared.dir)
		if shared.err == nil {
			shared.err = shared.srv.Start()
		}
	})
	if shared.err != nil {
		t.Fatalf("testenv: shared MinIO: %v", shared.err)
		return "", "", ""
	}
	return shared.srv.Endpoint, shared.srv.AccessKey, shared.srv.SecretKey
}

// StopShared stops the shared MinIO, if one was started, and removes its
// data. Call it after all tests have run; Shared does.
func StopShared() error {
	var errs []error
	if shared.srv != nil {
		errs = append(errs, shared.srv.Stop())
	}
	if shared.dir != "" {
		errs = append(errs, os.RemoveAll(shared.dir))
	}
	return errors.Join(errs...)
}

// Shared wraps m so that running it also stops the shared servers afterwards,
// before goleak looks for leaked goroutines:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(testenv.Shared(m)) }
func Shared(m *testing.M) interface{ Run() int } {
	return sharedRun{m}
}

type sharedRun struct{ m *testing.M }

func (s sharedRun) Run() int {
	code := s.m.Run()
	if err := StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// FindMinIO returns the minio binary to run: $FERRY_MINIO_BIN, else
// $(go env GOPATH)/bin/minio (where the Makefile installs it), else minio in
// PATH.
func FindMinIO() (string, error) {
	if p := os.Getenv(MinIOBinEnv); p != "" {
		return lookup(MinIOBinEnv)
	}
	if gopath := goPath(); gopath != "" {
		p := filepath.Join(gopath, "bin", "minio")
		if found, err := exec.LookPath(p); err == nil {
			return found, nil
		}
	}
	return lookup("", "minio")
}

func minioBin(t testing.TB) string {
	t.Helper()
	bin, err := FindMinIO()
	if err != nil {
		Require(t, fmt.Sprintf("minio binary (%v; installed by the Makefile, or set $%s)", err, MinIOBinEnv))
		return ""
	}
	return bin
}

// goPath asks the go command, which also knows a GOPATH set with `go env -w`;
// without one, the first element of $GOPATH or ~/go.
func goPath() string {
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" {
			return filepath.SplitList(p)[0]
		}
	}
	if p := os.Getenv("GOPATH"); p != "" {
		return filepath.SplitList(p)[0]
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go")
	}
	return ""
}

func newMinIO(bin, dir string) (*MinIOServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	consoleAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var secret [12]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	return &MinIOServer{
		Endpoint:    "http://" + addr,
		AccessKey:   "ferrytest",
		SecretKey:   hex.EncodeToString(secret[:]),
		bin:         bin,
		dir:         dir,
		addr:        addr,
		consoleAddr: consoleAddr,
	}, nil
}

// freeAddr picks a port the kernel says is free. Another process could take
// it before MinIO binds it; Start then fails with MinIO's message.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts the server, or starts it again after Stop or Kill, and waits
// until it answers its health check.
func (m *MinIOServer) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return errors.New("testenv: MinIO already running")
	}
	logf, err := os.OpenFile(m.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("testenv: MinIO log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(m.bin, "server",
		"--certs-dir", filepath.Join(m.dir, "certs"),
		"--address", m.addr,
		"--console-address", m.consoleAddr,
		filepath.Join(m.dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_UPDATE=off",
		"MINIO_BROWSER=on",
	)
	// An *os.File: the child writes to it directly, no copying goroutine.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testenv: starting %s: %w", m.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
	if err := m.waitReady(exited); err != nil {
		m.killLocked()
		return fmt.Errorf("testenv: MinIO at %s: %w\n%s", m.Endpoint, err, m.LogTail(4096))
	}
	return nil
}

// waitReady polls MinIO's liveness endpoint until it answers 200.
func (m *MinIOServer) waitReady(exited <-chan struct{}) error {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), minioStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/live", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v", minioStartTimeout)
		case <-tick.C:
		}
	}
}

// Stop shuts the server down as an operator would (SIGTERM), killing it if
// it takes too long, and waits for it to exit. Stopping a stopped server
// does nothing.
func (m *MinIOServer) Stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return nil
	}
	if err := terminate(m.cmd.Process); err != nil {
		return m.killLocked()
	}
	select {
	case <-m.exited:
		m.cmd = nil
		return nil
	case <-time.After(minioStopTimeout):
		return m.killLocked()
	}
}

// Kill ends the server at once (SIGKILL), as a crash or a pulled plug would,
// and waits for it to exit.
func (m *MinIOServer) Kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.killLocked()
}

func (m *MinIOServer) killLocked() error {
	if m.cmd == nil {
		return nil
	}
	err := m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testenv: killing MinIO: %w", err)
	}
	return nil
}

// LogTail returns up to the last n bytes MinIO wrote to its output, for
// failure messages.
func (m *MinIOServer) LogTail(n int64) string {
	f, err := os.Open(m.logPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return string(bytes.TrimSpace(b))
}

func (m *MinIOServer) logPath() string { return filepath.Join(m.dir, "minio.log") }
