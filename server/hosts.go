package server

import (
	"net"
	"net/http"
	"os"
	"strings"
)

// hostAllowed reports whether r may be served by the name it used. Only
// browsers are checked: DNS rebinding turns a browser against a server on
// the user's own machine or network, and browsers mark their requests
// (Origin, Sec-Fetch-Mode). Other clients (ferry send, SDKs) reach the
// server by whatever name they were given.
func (s *Server) hostAllowed(r *http.Request) bool {
	if r.Header.Get("Origin") == "" && r.Header.Get("Sec-Fetch-Mode") == "" {
		return true
	}
	host := s.requestHost(r)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if net.ParseIP(strings.Trim(host, "[]")) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if name, err := os.Hostname(); err == nil && strings.EqualFold(host, name) {
		return true
	}
	for _, h := range s.cfg.AllowedHosts {
		if h == "*" || strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	s.cfg.Log.Info("refused a browser's request by an unknown host name", "host", s.requestHost(r))
	return false
}
