package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
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

// admissions counts WebSocket connections server-wide, per client address
// and per user, so that no address or user can take every connection the
// process can hold.
type admissions struct {
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

// admission is a connection's place within the caps (see admit).
type admission struct {
	addr netip.Addr
	user string
	// key is the display name's key, held when the connection holds it.
	key  string
	held bool
}

// admit reserves a connection for addr and user, or says why not; unadmit
// gives the place back. The name returned is the one to show: name, or,
// when a connected user already shows a name that reads the same, name
// with the end of the user id, so that nobody passes for someone else.
func (s *Server) admit(addr netip.Addr, user, name string) (shown string, place admission, no *refusal) {
	a := &s.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.total >= s.cfg.MaxConns:
		s.metrics.refusedFull.Add(1)
		return "", place, &refusal{http.StatusServiceUnavailable, "5", "the server is at its connection limit; try again shortly", "server_full"}
	case a.byAddr[addr] >= s.cfg.MaxConnsPerIP:
		s.metrics.refusedAddr.Add(1)
		return "", place, &refusal{http.StatusTooManyRequests, "30", "too many connections from your address", "address_limit"}
	case a.byUser[user] >= s.cfg.MaxConnsPerUser:
		s.metrics.refusedUser.Add(1)
		return "", place, &refusal{http.StatusTooManyRequests, "30", "too many connections for this user; close some tabs or devices", "user_limit"}
	}
	if a.byAddr == nil {
		a.byAddr, a.byUser = make(map[netip.Addr]int), make(map[string]int)
		a.names = make(map[string]nameHolder)
	}
	a.total++
	a.byAddr[addr]++
	a.byUser[user]++
	place = admission{addr: addr, user: user, key: nameKey(name)}
	shown = name
	holder, taken := a.names[place.key]
	if place.held = !taken || holder.user == user; place.held {
		a.names[place.key] = nameHolder{user, holder.conns + 1}
	} else {
		shown = name + " #" + user[max(0, len(user)-4):]
	}
	return shown, place, nil
}

// unadmit gives back the place admit gave. Call it once per place.
func (s *Server) unadmit(p admission) {
	a := &s.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.byAddr[p.addr]--; a.byAddr[p.addr] <= 0 {
		delete(a.byAddr, p.addr)
	}
	if a.byUser[p.user]--; a.byUser[p.user] <= 0 {
		delete(a.byUser, p.user)
	}
	if p.held {
		if h := a.names[p.key]; h.conns <= 1 {
			delete(a.names, p.key)
		} else {
			a.names[p.key] = nameHolder{p.user, h.conns - 1}
		}
	}
}
