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
