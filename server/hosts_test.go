package server_test

import (
	"net/http"
	"testing"

	"github.com/ferryhq/ferry/server"
)

// A browser request by a host name the server does not know is refused
// (DNS rebinding), whatever its Origin; IP addresses, localhost, names in
// AllowedHosts and non-browser clients are served.
func TestHostAllowList(t *testing.T) {
	_, url := startServer(t, server.Config{AllowedHosts: []string{"chat.example.com"}})
	base := "http" + url[len("ws"):len(url)-len("/ws")]
	port := base[len("http://127.0.0.1"):]
	cases := []struct {
		host, origin, mode string
		want               int
	}{
		{"evil.example" + port, "http://evil.example" + port, "", http.StatusForbidden},
		{"evil.example" + port, "", "navigate", http.StatusForbidden},
		{"evil.example" + port, "", "", http.StatusOK}, // not a browser
		{"127.0.0.1" + port, "", "navigate", http.StatusOK},
		{"localhost" + port, "", "navigate", http.StatusOK},
		{"chat.example.com", "", "cors", http.StatusOK},
		{"CHAT.example.com.", "", "cors", http.StatusOK},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Host = c.host
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		if c.mode != "" {
			req.Header.Set("Sec-Fetch-Mode", c.mode)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("Host %q, Origin %q, Sec-Fetch-Mode %q: %d, want %d", c.host, c.origin, c.mode, res.StatusCode, c.want)
		}
	}
}
