package server_test

import (
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ferryhq/ferry/server"
)

// A page on another origin can load ferry.js, and ferry.js's probe (a GET
// of /ws, no upgrade, no credentials) can read why the server refuses it:
// 403 for the origin whatever the token, 401 for the token, with the CORS
// headers that make the status readable.
func TestCrossOriginHeaders(t *testing.T) {
	static := fstest.MapFS{"ferry.js": {Data: []byte("export class Ferry {}\n")}}
	cases := []struct {
		name   string
		cfg    server.Config
		path   string
		origin string
		status int
		acao   string
	}{
		{"library", server.Config{Static: static}, "/ferry.js", "https://app.example.com", 200, "*"},
		{"refused origin", server.Config{}, "/ws", "https://evil.example.com", 403, "https://evil.example.com"},
		{"refused origin with a bad token", server.Config{AuthSecret: []byte("0123456789abcdef0123456789abcdef")}, "/ws?token=x", "https://evil.example.com", 403, "https://evil.example.com"},
		{"allowed origin, bad token", server.Config{AuthSecret: []byte("0123456789abcdef0123456789abcdef"), AllowedOrigins: []string{"https://app.example.com"}}, "/ws?token=x", "https://app.example.com", 401, "https://app.example.com"},
		{"same-site request", server.Config{}, "/ws", "", 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, wsURL := startServer(t, tc.cfg)
			base := "http" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws"), "/ws")
			req, err := http.NewRequest(http.MethodGet, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Errorf("status %d, want %d", res.StatusCode, tc.status)
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != tc.acao {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.acao)
			}
			if tc.path != "/ferry.js" && tc.origin != "" && res.Header.Get("Access-Control-Expose-Headers") != "Retry-After" {
				t.Errorf("Retry-After not exposed: %v", res.Header)
			}
		})
	}
}
