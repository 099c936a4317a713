package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// /readyz says whether storage answers.
func TestReadyz(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{})
	res, err := http.Get(e.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || body["status"] != "ready" || body["storage"] != "ok" {
		t.Fatalf("/readyz = %d %v", res.StatusCode, body)
	}
}

// The page comes with headers that keep other sites from framing it or
// running code in it.
func TestPageSecurityHeaders(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{Static: fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}}})
	res, err := http.Get(e.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "connect-src 'self' ws://" + res.Request.Host} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
