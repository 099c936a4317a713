package s3

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// silentServer accepts connections and never answers, as a wedged service
// or a black-holing proxy does. It returns its URL.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// A service that never answers fails calls in bounded time: at the caller's
// deadline, or, without one, after Config.Timeout (and minio-go's retries).
func TestSilentServiceFails(t *testing.T) {
	endpoint := silentServer(t)
	tests := []struct {
		name     string
		timeout  time.Duration // Config.Timeout
		deadline time.Duration // the caller's
		within   time.Duration
	}{
		{"caller's deadline", 0, 2 * time.Second, 3 * time.Second},
		// The deadline is only a safety net: the transport must act first.
		{"Config.Timeout", 300 * time.Millisecond, 20 * time.Second, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := connect(Config{Endpoint: endpoint, Bucket: "bucket", Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			start := time.Now()
			_, err = s.Stat(ctx, "k")
			took := time.Since(start)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat on a silent service = %v, want a timeout", err)
			}
			if tc.timeout > 0 && ctx.Err() != nil {
				t.Errorf("Stat ended with the caller's deadline (%v), not Config.Timeout's", err)
			}
			if took > tc.within {
				t.Errorf("Stat on a silent service took %v, want under %v", took.Round(time.Millisecond), tc.within)
			}
		})
	}
}
