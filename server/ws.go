package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	// The origin first, and for a plain GET too (ferry.js's probe after a
	// failed handshake): a refused page learns that it is refused (403),
	// whatever its token, rather than gorilla's 400 for a request that is
	// not an upgrade.
	if !s.checkOrigin(r) {
		http.Error(w, "this page's origin may not connect (see --allowed-origins)", http.StatusForbidden)
		return
	}
	id, err := s.identify(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	addr := s.clientAddr(r)
	shown, place, no := s.admit(addr, id.user, id.name)
	if no != nil {
		s.cfg.Log.Info("connection refused", "reason", no.reason, "addr", addr, "user", id.user)
		w.Header().Set("Retry-After", no.retryAfter)
		http.Error(w, no.msg, no.status)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.unadmit(place)
		return // the upgrader has answered
	}
	c := &conn{
		s:     s,
		id:    newID("c_"),
		user:  id.user,
		name:  shown,
		place: place,
		rooms: id.rooms,
	}
	c.logger().Debug("connected", "addr", addr)
	c.holds.Store(2) // its session and its socket (see drop)
	if err := c.tr.attach(ws.NetConn(), &s.tenv, c); err != nil {
		_ = ws.NetConn().Close()
		s.unadmit(place)
		return
	}
	if c.tr.fl = s.flushers.assign(s); c.tr.fl == nil {
		c.tr.abandon() // shut down meanwhile
		s.unadmit(place)
		return
	}
	c.limiter = newLimiter(s.cfg.Rate, s.cfg.RateBurst, time.Now())
	c.seen()
	c.pinger = time.AfterFunc(s.cfg.PingInterval, c.heartbeat)
	if !id.expires.IsZero() {
		c.expiry = time.AfterFunc(time.Until(id.expires), func() {
			c.logger().Info("token expired")
			c.closeWith(protocol.CloseUnauthorized, "token expired")
		})
	}
	if !s.add(c) {
		c.pinger.Stop()
		if c.expiry != nil {
			c.expiry.Stop()
		}
		c.tr.abandon()
		s.unadmit(place)
		return
	}
	s.metrics.connections.Add(1)
	s.metrics.accepted.Add(1)
	welcome, err := json.Marshal(protocol.Welcome{
		T: protocol.TypeWelcome, V: protocol.Version,
		Conn: c.id, User: c.user, Name: c.name, Token: id.token,
		PingIntervalMS: s.cfg.PingInterval.Milliseconds(),
		PingTimeoutMS:  s.cfg.PingTimeout.Milliseconds(),
		Limits:         s.limits(),
	})
	if err != nil {
		c.logger().Error("encode welcome", "err", err)
		c.kill()
		return
	}
	// The welcome goes first in the queue, but out only once the hub knows
	// the connection: a client that has its welcome can count on being
	// reachable (a direct message sent to its user right then reaches it),
	// and what Register delivers (messages that waited) comes after it.
	c.tr.queueFirst(textFrame(welcome))
	s.hub.Register(c)
	c.tr.kick()
	// The handler returns so that net/http drops its per-request state (and
	// gorilla's Conn, whose reader ferry does not use); the poller starts a
	// reader whenever the socket has bytes.
	if err := s.poller.add(c); err != nil {
		c.logger().Error("poller", "err", err)
		c.kill()
	}
}

func (s *Server) limits() protocol.Limits {
	l := protocol.Limits{
		MaxFrame:   s.cfg.MaxFrame,
		MaxRooms:   s.cfg.MaxRooms,
		Rate:       int(s.cfg.Rate),
		RateBurst:  s.cfg.RateBurst,
		MaxUploads: s.cfg.MaxUploads,
	}
	if t := s.cfg.Transfer; t != nil {
		l.MaxChunk, l.MaxFileSize = transferLimits(t)
	}
	return l
}

// checkOrigin lets through clients that send no Origin (not browsers), the
// server's own origin, and the configured ones.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, s.requestHost(r)) {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	s.cfg.Log.Info("refused origin", "origin", origin, "host", s.requestHost(r))
	return false
}
