package testenv

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/internal/minioserver"
)

// MinIOBinEnv names the environment variable that points at a minio binary.
const MinIOBinEnv = minioserver.BinEnv

// MinIOServer is a MinIO process started for tests, listening on 127.0.0.1.
// Stop or Kill it and Start it again to test how ferry lives through storage
// outages: it comes back on the same address with the same data.
type MinIOServer = minioserver.Server

// StartMinIO starts a MinIO of the test's own, with its data in t.TempDir(),
// and stops it when the test ends. It skips or fails the test, as Require
// does, when no minio binary is found (see FindMinIO).
func StartMinIO(t testing.TB) *MinIOServer {
	t.Helper()
	bin := minioBin(t)
	if bin == "" {
		return nil
	}
	m, err := minioserver.New(bin, t.TempDir())
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
		shared.srv, shared.err = minioserver.New(bin, shared.dir)
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

// FindMinIO returns the minio binary to run (see minioserver.Find).
func FindMinIO() (string, error) { return minioserver.Find() }

func minioBin(t testing.TB) string {
	t.Helper()
	bin, err := FindMinIO()
	if err != nil {
		Require(t, fmt.Sprintf("minio binary (%v; installed by the Makefile, or set $%s)", err, MinIOBinEnv))
		return ""
	}
	return bin
}
