package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServerConfig describes a ferry server to run as a child process.
type ServerConfig struct {
	// Path is the ferry executable. Empty means this process's own executable.
	Path string
	// Command is the sub-command that serves. Empty means "serve"; Idle's
	// reference figure uses "bench reference-server".
	Command []string
	// Args are passed to the sub-command after --addr and --data, which
	// StartServer chooses: a free loopback port and a new temporary folder.
	// The child's environment has no FERRY_* variables, so that settings
	// meant for the bench (FERRY_RATE, ...) do not configure the server:
	// Args alone do.
	Args []string
	// Env is added to the child's environment, after the FERRY_ variables
	// are taken out (a test running its own binary as ferry says so here).
	Env []string
	// StartTimeout bounds the wait for /healthz to answer. Zero means 15s.
	StartTimeout time.Duration
}

// Server is a ferry server running as a child process.
type Server struct {
	Target
	cmd     *exec.Cmd
	dir     string
	logPath string
	exited  chan struct{}
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

// StartServer runs "ferry serve" as a child process listening on a free
// loopback port, with its data (and its log, server.log) in a temporary folder
// that Close removes. It returns once /healthz answers 200.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find ferry executable: %w", err)
		}
		cfg.Path = exe
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 15 * time.Second
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if len(cfg.Command) == 0 {
		cfg.Command = []string{"serve"}
	}
	args := append(cfg.Command[:len(cfg.Command):len(cfg.Command)], "--addr", addr, "--data", dataDir)
	if cfg.Command[0] == "serve" {
		// The load comes from 127.0.0.1, often as one user: the caps that
		// keep one address or user from taking every connection are
		// lifted (the open-file limit still holds).
		args = append(args, "--max-conns", "1000000", "--max-conns-per-ip", "1000000", "--max-conns-per-user", "1000000",
			"--history-per-user", "1073741824")
	}
	args = append(args, cfg.Args...)
	cmd := exec.Command(cfg.Path, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, cfg.Env...)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start server: %w", err)
	}
	logFile.Close() // the child holds its own copy
	s := &Server{
		Target:  Target{URL: "ws://" + addr + "/ws", PID: cmd.Process.Pid},
		cmd:     cmd,
		dir:     dir,
		logPath: logPath,
		exited:  make(chan struct{}),
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitHealthy(ctx, cfg.StartTimeout); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.HealthURL(), nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("server exited before it was ready: %v\n%s", s.waitErr, s.LogTail(2048))
		case <-ctx.Done():
			return fmt.Errorf("server not healthy after %s: %w\n%s", timeout, ctx.Err(), s.LogTail(2048))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Exited is closed when the child process has ended.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// LogTail returns up to the last n bytes of the server's output.
func (s *Server) LogTail(n int) string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	cut := false
	if fi, err := f.Stat(); err == nil && fi.Size() > int64(n) {
		// Only the tail is read: a long run's log can be large.
		_, _ = f.Seek(fi.Size()-int64(n), io.SeekStart)
		cut = true
	}
	b, _ := io.ReadAll(io.LimitReader(f, int64(n)))
	if i := bytes.IndexByte(b, '\n'); cut && i >= 0 {
		b = b[i+1:] // start at a whole line
	}
	return string(b)
}

// Close stops the server (SIGTERM, then SIGKILL after 10s) and removes its
// temporary folder. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
				s.closeErr = errors.New("server did not stop within 10s of SIGTERM; killed")
			}
		}
		if err := os.RemoveAll(s.dir); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// freePort asks the kernel for a loopback port nobody listens on. Another
// process could take it before the server binds; StartServer then fails
// rather than measuring the wrong server, as the child exits with an error.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
