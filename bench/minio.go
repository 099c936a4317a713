package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry/internal/minioserver"
)

// minio is the MinIO the upload bench starts for itself when no S3
// endpoint is given, with its data in a temporary folder.
type minio struct {
	*minioserver.Server
	dir string
	// PID is MinIO's process id, for its CPU time; 0 when it could not be
	// found (no /proc).
	PID int
}

func startMinIO() (*minio, error) {
	bin, err := minioserver.Find()
	if err != nil {
		return nil, fmt.Errorf("no minio binary (give --s3-endpoint, or build it with `make test-deps`): %w", err)
	}
	dir, err := os.MkdirTemp("", "ferry-bench-minio-")
	if err != nil {
		return nil, err
	}
	before := childrenRunning(bin)
	srv, err := minioserver.New(bin, dir)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	m := &minio{Server: srv, dir: dir}
	for pid := range childrenRunning(bin) {
		if !before[pid] {
			m.PID = pid
		}
	}
	return m, nil
}

// Close stops MinIO and removes its data.
func (m *minio) Close() error {
	return errors.Join(m.Stop(), os.RemoveAll(m.dir))
}

// childrenRunning returns the ids of this process's children that run bin.
// minioserver keeps its process to itself; /proc tells which one it is.
func childrenRunning(bin string) map[int]bool {
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := strconv.Itoa(os.Getpid())
	pids := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || exe != want {
			continue
		}
		if parentOf(pid) == self {
			pids[pid] = true
		}
	}
	return pids
}

// parentOf returns the PPid line of /proc/<pid>/status, or "".
func parentOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
