package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// Defaults of the connection caps.
const (
	DefaultMaxConns        = 10_000
	DefaultMaxConnsPerIP   = 500
	DefaultMaxConnsPerUser = 64
)

// clientAddr is the address r comes from: the peer of the TCP connection,
// or, when that peer is a trusted proxy, the last address in
// X-Forwarded-For that is not one (proxies append the address they were
// reached from, so the entries left of the last untrusted one are the
// client's to write and cannot be believed).
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if !s.trusted(peer) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(list[j]))
			if err != nil {
				return peer // a forged or garbled list: the proxy is the client
			}
			a = a.Unmap()
			if !s.trusted(a) {
				return a
			}
			peer = a
		}
	}
	return peer
}

// remoteAddr parses http.Request.RemoteAddr.
func remoteAddr(hostPort string) netip.Addr {
	if ap, err := netip.ParseAddrPort(hostPort); err == nil {
		return ap.Addr().Unmap()
	}
	if h, _, err := net.SplitHostPort(hostPort); err == nil {
		hostPort = h
	}
	a, _ := netip.ParseAddr(hostPort)
	return a.Unmap()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwarded returns the value of header X-Forwarded-<name> when r comes
// from a trusted proxy, else "".
func (s *Server) forwarded(r *http.Request, name string) string {
	if !s.trusted(remoteAddr(r.RemoteAddr)) {
		return ""
	}
	v, _, _ := strings.Cut(r.Header.Get("X-Forwarded-"+name), ",")
	return strings.TrimSpace(v)
}

// requestHost is the host name the client used: Host, or X-Forwarded-Host
// from a trusted proxy.
func (s *Server) requestHost(r *http.Request) string {
	if h := s.forwarded(r, "Host"); h != "" {
		return h
	}
	return r.Host
}

// admission counts WebSocket connections server-wide, per client address
// and per user, so that no address or user can take every connection the
// process can hold.
type admission struct {
	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
	byUser map[string]int
	// names maps the key of each display name shown (nameKey) to the
	// user who took it first, and how many of that user's connections show
	// it.
	names map[string]nameHolder
}

type nameHolder struct {
	user  string
	conns int
}

// refusal is why a connection was not admitted.
type refusal struct {
	status     int
	retryAfter string
	msg        string
	reason     string // for the log and /metrics
}

// admit reserves a connection for addr and user, or says why not. release
// gives the place back; it may be called more than once. The name returned
// is the one to show: *name, or, when a connected user already shows a
// name that reads the same, *name with the end of the user id, so that
// nobody passes for someone else.
func (s *Server) admit(addr netip.Addr, user, name string) (shown string, release func(), no *refusal) {
	a := &s.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.total >= s.cfg.MaxConns:
		s.metrics.refusedFull.Add(1)
		return "", nil, &refusal{http.StatusServiceUnavailable, "5", "the server is at its connection limit; try again shortly", "server_full"}
	case a.byAddr[addr] >= s.cfg.MaxConnsPerIP:
		s.metrics.refusedAddr.Add(1)
		return "", nil, &refusal{http.StatusTooManyRequests, "30", "too many connections from your address", "address_limit"}
	case a.byUser[user] >= s.cfg.MaxConnsPerUser:
		s.metrics.refusedUser.Add(1)
		return "", nil, &refusal{http.StatusTooManyRequests, "30", "too many connections for this user; close some tabs or devices", "user_limit"}
	}
	if a.byAddr == nil {
		a.byAddr, a.byUser = make(map[netip.Addr]int), make(map[string]int)
		a.names = make(map[string]nameHolder)
	}
	a.total++
	a.byAddr[addr]++
	a.byUser[user]++
	shown = name
	key := nameKey(name)
	holder, taken := a.names[key]
	holds := !taken || holder.user == user
	if holds {
		a.names[key] = nameHolder{user, holder.conns + 1}
	} else {
		shown = name + " #" + user[max(0, len(user)-4):]
	}
	var once sync.Once
	return shown, func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.total--
			if a.byAddr[addr]--; a.byAddr[addr] <= 0 {
				delete(a.byAddr, addr)
			}
			if a.byUser[user]--; a.byUser[user] <= 0 {
				delete(a.byUser, user)
			}
			if holds {
				if h := a.names[key]; h.conns <= 1 {
					delete(a.names, key)
				} else {
					a.names[key] = nameHolder{user, h.conns - 1}
				}
			}
		})
	}, nil
}
