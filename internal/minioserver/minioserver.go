// Package minioserver runs a MinIO server as a child process on 127.0.0.1,
// for ferry's tests and for ferry bench. It never imports MinIO: it runs the
// minio binary that make test builds.
package minioserver

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferryhq/ferry/internal/childproc"
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

	mu   sync.Mutex // held by Start, so that one runs at a time
	proc childproc.Process
}

// Find returns the minio binary to run: $FERRY_MINIO_BIN, else
// $(go env GOPATH)/bin/minio (where the Makefile installs it), else minio in
// PATH.
func Find() (string, error) { return childproc.Find(BinEnv, "minio") }

// New prepares a server running bin with its data and log in dir, on free
// ports, with random root credentials; Start starts it.
func New(bin, dir string) (*Server, error) {
	addr, err := childproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	consoleAddr, err := childproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	var secret [12]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	return &Server{
		proc:        childproc.Process{Log: filepath.Join(dir, "minio.log")},
		Endpoint:    "http://" + addr,
		AccessKey:   "ferry",
		SecretKey:   hex.EncodeToString(secret[:]),
		bin:         bin,
		dir:         dir,
		addr:        addr,
		consoleAddr: consoleAddr,
	}, nil
}

// Start starts the server, or starts it again after Stop or Kill, and waits
// until it answers its health check.
func (m *Server) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
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
	if err := m.proc.Start(cmd); err != nil {
		return fmt.Errorf("minioserver: MinIO: %w", err)
	}
	// MinIO's cluster health endpoint, not its liveness one: that answers
	// as soon as the process listens, before the object layer is up
	// ("Server not initialized yet").
	if err := m.proc.WaitHTTP(m.Endpoint+"/minio/health/cluster", minioStartTimeout); err != nil {
		_ = m.proc.Kill()
		return fmt.Errorf("minioserver: MinIO at %s: %w\n%s", m.Endpoint, err, m.LogTail(4096))
	}
	return nil
}

// Stop shuts the server down as an operator would (SIGTERM), killing it if
// it takes too long, and waits for it to exit. Stopping a stopped server
// does nothing.
func (m *Server) Stop() error { return m.proc.Stop(minioStopTimeout) }

// Kill ends the server at once (SIGKILL), as a crash or a pulled plug would,
// and waits for it to exit.
func (m *Server) Kill() error { return m.proc.Kill() }

// LogTail returns up to the last n bytes MinIO wrote to its output, for
// failure messages.
func (m *Server) LogTail(n int64) string { return m.proc.LogTail(n) }
