package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ferryhq/ferry/transfer"
)

// readiness is /readyz's answer.
type readiness struct {
	Status  string `json:"status"`
	Storage string `json:"storage"`
	Error   string `json:"error,omitempty"`
}

// serveReady answers whether this node can do its work: it is not shutting
// down, and its storage answers a small request in time and has room. A
// load balancer sends users elsewhere while it answers 503; /healthz keeps
// saying the process lives.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	st := readiness{Status: "ready", Storage: "ok"}
	code := http.StatusOK
	switch {
	case closing:
		st, code = readiness{Status: "unready", Storage: "ok", Error: "shutting down"}, http.StatusServiceUnavailable
	case s.cfg.Transfer == nil:
		st.Storage = "none"
	default:
		if err := s.cfg.Transfer.Ready(r.Context()); err != nil {
			st, code = readiness{Status: "unready", Storage: "down", Error: err.Error()}, http.StatusServiceUnavailable
			var te *transfer.Error
			if errors.As(err, &te) && te.Code == transfer.CodeStorageFull {
				st.Storage = "full"
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(st)
}

// partMemory is the part memory uploads hold, for /metrics.
func (s *Server) partMemory() int64 {
	if s.cfg.Transfer == nil {
		return 0
	}
	return s.cfg.Transfer.PartMemoryInUse()
}

// pageHeaders adds to the page and its files the headers that keep a
// browser from being turned against its user: the page runs only its own
// scripts and styles, talks only to its own server, cannot be framed by
// another site (clickjacking), and sends no referrer (links to other sites
// would carry the page's address along).
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
			"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws://"+r.Host+" wss://"+r.Host+"; "+
			"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
