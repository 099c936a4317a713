// Package minioserver runs a MinIO server as a child process on 127.0.0.1,
// for ferry's tests and for ferry bench. It never imports MinIO: it runs the
// minio binary that make test builds.
package minioserver

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
	"time"
)

// BinEnv names the environment variable that points at a minio binary.
const BinEnv = "FERRY_MINIO_BIN"

// How long MinIO gets to come up, and to shut down before it is killed. It
// is usually ready within a second or two; the margin is for loaded CI
// machines and the race detector.
const (
	minioStartTimeout = 60 * time.Second
	minioStopTimeout  = 10 * time.Second
)

// Server is a MinIO process listening on 127.0.0.1.
// Stop or Kill it and Start it again to test how ferry lives through storage
// outages: it comes back on the same address with the same data.
type Server struct {
	// Endpoint is the server's URL, such as "http://127.0.0.1:41234".
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string

	bin, dir, addr, consoleAddr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Find returns the minio binary to run: $FERRY_MINIO_BIN, else
// $(go env GOPATH)/bin/minio (where the Makefile installs it), else minio in
// PATH.
func Find() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("$%s=%q: %w", BinEnv, p, err)
		}
		return found, nil
	}
	if gopath := goPath(); gopath != "" {
		p := filepath.Join(gopath, "bin", "minio")
		if found, err := exec.LookPath(p); err == nil {
			return found, nil
		}
	}
	return exec.LookPath("minio")
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

// New prepares a server running bin with its data and log in dir, on free
// ports, with random root credentials; Start starts it.
func New(bin, dir string) (*Server, error) {
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
	return &Server{
		Endpoint:    "http://" + addr,
		AccessKey:   "ferry",
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
func (m *Server) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return errors.New("minioserver: MinIO already running")
	}
	logf, err := os.OpenFile(m.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("minioserver: MinIO log: %w", err)
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
		return fmt.Errorf("minioserver: starting %s: %w", m.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
	if err := m.waitReady(exited); err != nil {
		m.killLocked()
		return fmt.Errorf("minioserver: MinIO at %s: %w\n%s", m.Endpoint, err, m.LogTail(4096))
	}
	return nil
}

// waitReady polls MinIO's cluster health endpoint until it answers 200: the
// liveness endpoint answers as soon as the process listens, before the
// object layer is up ("Server not initialized yet").
func (m *Server) waitReady(exited <-chan struct{}) error {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), minioStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/cluster", nil)
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
func (m *Server) Stop() error {
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
func (m *Server) Kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.killLocked()
}

func (m *Server) killLocked() error {
	if m.cmd == nil {
		return nil
	}
	err := m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("minioserver: killing MinIO: %w", err)
	}
	return nil
}

// LogTail returns up to the last n bytes MinIO wrote to its output, for
// failure messages.
func (m *Server) LogTail(n int64) string {
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

func (m *Server) logPath() string { return filepath.Join(m.dir, "minio.log") }
