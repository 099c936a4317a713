package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// minioServer is a MinIO process the upload bench starts for itself when no
// S3 endpoint is given.
type minioServer struct {
	Endpoint, AccessKey, SecretKey string
	cmd                            *exec.Cmd
	dir                            string
	exited                         chan struct{}
}

// findMinIO looks for the minio binary where `make test` builds it.
func findMinIO() (string, error) {
	if p := os.Getenv("FERRY_MINIO_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "minio")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("no minio binary: give --s3-endpoint, or build it with `make test-deps`")
	}
	return p, nil
}

func startMinIO(ctx context.Context) (*minioServer, error) {
	bin, err := findMinIO()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ferry-bench-minio-")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	m := &minioServer{Endpoint: "http://" + addr, AccessKey: "ferrybench", SecretKey: "ferrybench-secret", dir: dir, exited: make(chan struct{})}
	m.cmd = exec.Command(bin, "server", "--quiet", "--address", addr,
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(cport)), filepath.Join(dir, "data"))
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey)
	m.cmd.SysProcAttr = childProcAttr()
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start minio: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(m.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return m, nil
			}
		}
		select {
		case <-m.exited:
			m.Close()
			return nil, errors.New("minio exited at start")
		case <-ctx.Done():
			m.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Close()
			return nil, errors.New("minio did not become ready in 30s")
		}
	}
}

// Close stops MinIO and removes its data.
func (m *minioServer) Close() {
	_ = m.cmd.Process.Kill()
	<-m.exited
	os.RemoveAll(m.dir)
}
