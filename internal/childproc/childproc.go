// Package childproc runs a server program as a child process of a test or
// a benchmark (MinIO, the nodes of a NATS cluster): started with its output
// appended to a log file, waited for until it answers over HTTP, stopped
// cleanly or killed as a crash would, and started again. On Linux the
// child dies with its parent, so an interrupted test leaves nothing
// running.
package childproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Process is a program that runs, then runs again, as a child. Its zero
// value runs nothing; set Log before Start.
type Process struct {
	// Log is the file the child's output is appended to, across runs.
	Log string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// ErrRunning is Start's error when the child runs already.
var ErrRunning = errors.New("childproc: already running")

// Start starts cmd as the child, its output going to the log.
func (p *Process) Start(cmd *exec.Cmd) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return ErrRunning
	}
	logf, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("childproc: log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	// An *os.File: the child writes to it directly, no copying goroutine.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("childproc: starting %s: %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return nil
}

// WaitHTTP polls url until it answers 200, the child exits, or timeout
// passes. The error names the last answer.
func (p *Process) WaitHTTP(url string, timeout time.Duration) error {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return errors.New("not running")
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v (%s)", timeout, last)
		case <-tick.C:
		}
	}
}

// Stop asks the child to shut down (SIGTERM), kills it past timeout, and
// waits for it to exit. Stopping a stopped child does nothing.
func (p *Process) Stop(timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	if err := terminate(p.cmd.Process); err != nil {
		return p.killLocked()
	}
	select {
	case <-p.exited:
		p.cmd = nil
		return nil
	case <-time.After(timeout):
		return p.killLocked()
	}
}

// Kill ends the child at once (SIGKILL), as a crash or a pulled plug
// would, and waits for it to exit.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killLocked()
}

func (p *Process) killLocked() error {
	if p.cmd == nil {
		return nil
	}
	path := p.cmd.Path
	err := p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("childproc: killing %s: %w", path, err)
	}
	return nil
}

// LogTail returns up to the last n bytes of the log, for failure
// messages.
func (p *Process) LogTail(n int64) string {
	f, err := os.Open(p.Log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return string(bytes.TrimSpace(b))
}
