package testenv_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/s3"
)

// live reports whether a MinIO answers its liveness check at endpoint.
func live(t *testing.T, endpoint string) bool {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get(endpoint + "/minio/health/live")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func connect(t *testing.T, endpoint, access, secret string) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.New(ctx, s3.Config{Endpoint: endpoint, Bucket: "testenv", AccessKey: access, SecretKey: secret})
	if err != nil {
		t.Fatalf("s3.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSharedMinIO(t *testing.T) {
	e1, a1, s1 := testenv.MinIO(t)
	e2, a2, s2 := testenv.MinIO(t)
	if e1 != e2 || a1 != a2 || s1 != s2 {
		t.Errorf("two calls gave two servers: %s and %s", e1, e2)
	}
	if !strings.HasPrefix(e1, "http://127.0.0.1:") || !live(t, e1) {
		t.Errorf("shared MinIO at %q is not live", e1)
	}
}

// TestMinIORestart is what transfer tests do to storage: stop it, crash it,
// bring it back, and expect the data to be there.
func TestMinIORestart(t *testing.T) {
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	s := connect(t, m.Endpoint, m.AccessKey, m.SecretKey)
	if err := s.Put(ctx, "kept", strings.NewReader("across restarts"), 15, storage.Meta{}); err != nil {
		t.Fatal(err)
	}
	endpoint := m.Endpoint

	for _, down := range []struct {
		name string
		do   func() error
	}{
		{"Stop", m.Stop},
		{"Kill", m.Kill},
	} {
		if err := down.do(); err != nil {
			t.Fatalf("%s: %v", down.name, err)
		}
		if live(t, m.Endpoint) {
			t.Fatalf("MinIO still answers after %s", down.name)
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		_, err := s.Stat(short, "kept")
		cancel()
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat while MinIO is down after %s = %v, want a connection error", down.name, err)
		}
		if err := m.Start(); err != nil {
			t.Fatalf("Start after %s: %v", down.name, err)
		}
		if m.Endpoint != endpoint {
			t.Fatalf("restarted at %s, was %s", m.Endpoint, endpoint)
		}
		if info, err := s.Stat(ctx, "kept"); err != nil || info.Size != 15 {
			t.Fatalf("Stat after %s and Start = %+v, %v; want the object back", down.name, info, err)
		}
	}
	if err := m.Start(); err == nil {
		t.Error("Start of a running MinIO succeeded")
	}
	// Stop twice is harmless: the test's cleanup stops it once more.
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
