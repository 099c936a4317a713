// Package ferrytest runs a complete ferry in the test's process, uploads
// included, over a real HTTP server, and gives the stores the tests run
// against: a folder, and a bucket of its own in the tests' shared MinIO.
package ferrytest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/disk"
	"github.com/ferryhq/ferry/storage/s3"
	"github.com/ferryhq/ferry/transfer"
)

// Ferry is a running server with uploads.
type Ferry struct {
	// URL is the HTTP base ("http://127.0.0.1:PORT"); WS the WebSocket
	// endpoint ("ws://127.0.0.1:PORT/ws").
	URL, WS string
	// TLS, under StartTLS, trusts the server's certificate.
	TLS      *tls.Config
	Server   *server.Server
	Transfer *transfer.Manager
	Store    storage.Store

	http *httptest.Server
	once sync.Once
}

// Serve runs a ferry without uploads on l (a fresh port when l is nil: a
// test restarting the server passes the same listener again) until the test
// ends (or Stop).
func Serve(t testing.TB, l net.Listener, scfg server.Config) *Ferry {
	t.Helper()
	f := &Ferry{}
	var err error
	if f.Server, err = server.New(scfg); err != nil {
		t.Fatal(err)
	}
	if scfg.Transfer != nil {
		scfg.Transfer.Notify(f.Server)
	}
	f.http = httptest.NewUnstartedServer(f.Server)
	if l != nil {
		f.http.Listener.Close()
		f.http.Listener = l
	}
	f.http.Start()
	f.URL = f.http.URL
	f.WS = "ws" + strings.TrimPrefix(f.URL, "http") + "/ws"
	t.Cleanup(f.Stop)
	return f
}

// Start runs a ferry over store until the test ends (or Stop). tcfg and
// scfg are completed: the store, the transfer manager and its events
// are set here; storage retries default to 20 ms doubling to 200 ms, so
// outage tests are quick.
func Start(t testing.TB, store storage.Store, tcfg transfer.Config, scfg server.Config) *Ferry {
	t.Helper()
	return start(t, store, tcfg, scfg, false)
}

// StartTLS is Start over HTTPS, with httptest's certificate for
// 127.0.0.1: URL is "https://…", WS "wss://…", and TLS trusts the
// certificate.
func StartTLS(t testing.TB, store storage.Store, tcfg transfer.Config, scfg server.Config) *Ferry {
	t.Helper()
	return start(t, store, tcfg, scfg, true)
}

func start(t testing.TB, store storage.Store, tcfg transfer.Config, scfg server.Config, useTLS bool) *Ferry {
	t.Helper()
	f := &Ferry{Store: store}
	tcfg.Store = store
	if tcfg.RetryMax == 0 {
		tcfg.RetryMin, tcfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	}
	tm, err := transfer.New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Transfer = tm
	scfg.Transfer = tm
	if f.Server, err = server.New(scfg); err != nil {
		t.Fatal(err)
	}
	tm.Notify(f.Server)
	f.http = httptest.NewUnstartedServer(f.Server)
	if useTLS {
		f.http.StartTLS()
		f.TLS = f.http.Client().Transport.(*http.Transport).TLSClientConfig
	} else {
		f.http.Start()
	}
	f.URL = f.http.URL
	f.WS = "ws" + strings.TrimPrefix(f.URL, "http") + "/ws"
	t.Cleanup(f.Stop)
	return f
}

// Client is an HTTP client for the server's URLs (trusting its
// certificate under StartTLS).
func (f *Ferry) Client() *http.Client { return f.http.Client() }

// Stop shuts the server down as a restart would: connections are closed
// with 1001 and uploads stay resumable. Calling it again does nothing.
func (f *Ferry) Stop() {
	f.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = f.Server.Shutdown(ctx)
		f.http.Close()
		if f.Transfer != nil {
			_ = f.Transfer.Shutdown(ctx)
		}
	})
}

// DiskStore is a store in a temporary folder.
func DiskStore(t testing.TB) storage.Store {
	t.Helper()
	st, err := disk.New(disk.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// MinIOStore is a bucket of its own in the tests' shared MinIO (see
// testenv.MinIO: the test skips, or fails under FERRY_REQUIRE_ALL=1, when
// there is no MinIO).
func MinIOStore(t testing.TB) storage.Store {
	t.Helper()
	endpoint, ak, sk := testenv.MinIO(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	st, err := s3.New(context.Background(), s3.Config{Endpoint: endpoint, Bucket: "t-" + hex.EncodeToString(b), AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Metric reads one sample of a server's /metrics (base is its http URL),
// failing the test if there is none.
func Metric(t testing.TB, base, name string) int64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			// The text format writes large values with an exponent.
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", name, v, err)
			}
			return int64(n)
		}
	}
	t.Fatalf("no %s in %s/metrics", name, base)
	return 0
}
