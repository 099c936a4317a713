package server

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/text/unicode/norm"

	"github.com/ferryhq/ferry/protocol"
)

type identity struct {
	user, name string
	// token is handed to anonymous users so they can come back as themselves.
	token string
	// rooms are the patterns of the rooms the user may join; nil means any
	// (anonymous mode). Set from the token's rooms claim with an auth
	// secret, where an empty list grants none.
	rooms []string
	// expires is when the token ends (zero: anonymous mode): the
	// connection is closed with 4500 then.
	expires time.Time
}

// claims are the token's claims: sub is the user id, name the display
// name, rooms the rooms a connection token grants, room the one room a
// room token grants.
type claims struct {
	Name  string   `json:"name,omitempty"`
	Rooms []string `json:"rooms,omitempty"`
	Room  string   `json:"room,omitempty"`
	// Invite marks a room token anyone may use (an invite to a private
	// room in anonymous mode); other room tokens are for their sub only.
	Invite bool `json:"inv,omitempty"`
	jwt.RegisteredClaims
}

// Token describes a token to sign (see Sign).
type Token struct {
	// User is the user id (sub): 1 to 128 characters of A-Z a-z 0-9 and
	// - _ . : @ +.
	User string
	// Name is the display name.
	Name string
	// Rooms, in a connection token, lists the rooms the user may join:
	// names, or patterns where * stands for any characters ("team-*",
	// "*" for every room). None: no named room.
	Rooms []string
	// Room makes a room token instead: it grants this one room to User,
	// presented with a join (field token), and cannot open a connection.
	Room string
	// Invite makes a room token that grants Room to whoever presents it.
	Invite bool
	// TTL is how long the token is valid (0: no expiry, which a server
	// with an auth secret refuses; negative: already expired).
	TTL time.Duration
	// Audience and Issuer, when set, are the aud and iss claims.
	Audience, Issuer string
}

// Sign returns t as an HS256 JWT signed with secret.
func (t Token) Sign(secret []byte) (string, error) {
	if err := validUserID(t.User); err != nil {
		return "", err
	}
	now := time.Now()
	c := claims{Name: t.Name, Rooms: t.Rooms, Room: t.Room, Invite: t.Invite, RegisteredClaims: jwt.RegisteredClaims{
		Subject:  t.User,
		IssuedAt: jwt.NewNumericDate(now),
		Issuer:   t.Issuer,
	}}
	if t.Audience != "" {
		c.Audience = jwt.ClaimStrings{t.Audience}
	}
	if t.TTL != 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(t.TTL))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// SignToken returns an HS256 connection token for user that grants every
// room, valid for ttl (0: no expiry; negative: already expired).
func SignToken(secret []byte, user, name string, ttl time.Duration) (string, error) {
	return Token{User: user, Name: name, Rooms: []string{"*"}, TTL: ttl}.Sign(secret)
}

// validUserID reports whether id may be a user id: it is shown to others
// and is part of room names (user:ID), so it is short and plain.
func validUserID(id string) error {
	if id == "" || len(id) > 128 {
		return errors.New("a user id has 1 to 128 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '@', c == '+':
		default:
			return fmt.Errorf("user id %q has a character outside A-Z a-z 0-9 - _ . : @ +", id)
		}
	}
	return nil
}

// parseToken checks an HS256 token signed with secret and returns its
// claims. The expiry is checked when there is one.
func parseToken(secret []byte, token string, opts ...jwt.ParserOption) (claims, error) {
	var c claims
	opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
	if _, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil }, opts...); err != nil {
		return claims{}, err
	}
	if err := validUserID(c.Subject); err != nil {
		return claims{}, fmt.Errorf("subject: %w", err)
	}
	return c, nil
}

// parseAuthToken checks a token against the auth secret: it must expire,
// within MaxTokenTTL of its issue, and carry the configured audience and
// issuer.
func (s *Server) parseAuthToken(token string) (claims, error) {
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithIssuedAt()}
	if s.cfg.AuthAudience != "" {
		opts = append(opts, jwt.WithAudience(s.cfg.AuthAudience))
	}
	if s.cfg.AuthIssuer != "" {
		opts = append(opts, jwt.WithIssuer(s.cfg.AuthIssuer))
	}
	c, err := parseToken(s.cfg.AuthSecret, token, opts...)
	if err != nil {
		return claims{}, err
	}
	from := time.Now()
	if c.IssuedAt != nil {
		from = c.IssuedAt.Time
	}
	if s.cfg.MaxTokenTTL > 0 && c.ExpiresAt.Sub(from) > s.cfg.MaxTokenTTL {
		return claims{}, fmt.Errorf("token valid for %s, over the server's maximum of %s", c.ExpiresAt.Sub(from).Round(time.Second), s.cfg.MaxTokenTTL)
	}
	return c, nil
}

// bearer returns the token from the query or the Authorization header.
func bearer(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// identify decides who a request is. With an auth secret a valid token is
// required; without one a token the server signed earlier keeps the user's
// id, and anyone else becomes a new anonymous user.
func (s *Server) identify(r *http.Request) (identity, error) {
	want := cleanName(r.URL.Query().Get("name"))
	token := bearer(r)
	if len(s.cfg.AuthSecret) > 0 {
		if token == "" {
			return identity{}, errors.New("a token is required (query parameter token or Authorization: Bearer)")
		}
		c, err := s.parseAuthToken(token)
		if err != nil {
			return identity{}, fmt.Errorf("bad token: %w", err)
		}
		if c.Room != "" {
			return identity{}, errors.New("bad token: a room token grants a room to a join, it does not open a connection")
		}
		name := cleanName(c.Name)
		if name == "" {
			name = c.Subject
		}
		return identity{user: c.Subject, name: name, rooms: append([]string{}, c.Rooms...), expires: c.ExpiresAt.Time}, nil
	}
	id := identity{user: "", name: want}
	if token != "" {
		if c, err := parseToken(s.anonKey, token); err == nil && c.Room == "" && s.anonFresh(c) {
			id.user = c.Subject
			if id.name == "" {
				id.name = cleanName(c.Name)
			}
		}
	}
	if id.user == "" {
		id.user = newID("u_")
	}
	if id.name == "" {
		id.name = "guest-" + id.user[len(id.user)-4:]
	}
	// Renewed at every connection: a user who comes back within AnonTTL
	// keeps the id.
	t, err := Token{User: id.user, Name: id.name, TTL: s.cfg.AnonTTL}.Sign(s.anonKey)
	if err != nil {
		return identity{}, err
	}
	id.token = t
	return id, nil
}

// anonFresh reports whether an anonymous token still names its user:
// unexpired, and, for a token of older versions without an expiry, issued
// within AnonTTL.
func (s *Server) anonFresh(c claims) bool {
	if c.ExpiresAt != nil {
		return true // checked by the parser
	}
	return c.IssuedAt != nil && time.Since(c.IssuedAt.Time) < s.cfg.AnonTTL
}

// mayJoin checks that the connection may join room, and returns the pass
// for its later joins of it when it joined with a token.
//
// With an auth secret: its token's rooms claim grants the room, or
// roomToken, a room token for this user, does (the pass is roomToken
// itself: it ends when it expires). Without one: rooms are open, but a
// private room (PrivatePrefix) takes an invite, or a pass the server gave
// this user at an earlier join. The refusal is the same whether or not the
// room exists.
func (c *conn) mayJoin(room, roomToken string) (pass string, err error) {
	s := c.s
	if len(s.cfg.AuthSecret) == 0 {
		if !strings.HasPrefix(room, protocol.PrivatePrefix) {
			return "", nil
		}
		if roomToken == "" {
			return "", protocol.Errorf(protocol.CodeForbidden, "room %q is private: join it with an invite from one of its members", room)
		}
		rc, err := parseToken(s.anonKey, roomToken)
		switch {
		case err != nil:
			return "", protocol.Errorf(protocol.CodeForbidden, "invite refused: %v", err)
		case rc.Room != room || !rc.Invite && rc.Subject != c.user:
			return "", protocol.Errorf(protocol.CodeForbidden, "the invite is for another room or user")
		}
		pass, err := Token{User: c.user, Room: room, TTL: s.cfg.AnonTTL}.Sign(s.anonKey)
		return pass, err
	}
	if grants(c.rooms, room) {
		return "", nil
	}
	if roomToken == "" {
		return "", protocol.Errorf(protocol.CodeForbidden, "your token does not grant room %q", room)
	}
	rc, err := s.parseAuthToken(roomToken)
	switch {
	case err != nil:
		return "", protocol.Errorf(protocol.CodeForbidden, "room token refused: %v", err)
	case rc.Room != room || rc.Subject != c.user:
		return "", protocol.Errorf(protocol.CodeForbidden, "the room token is for another room or user")
	}
	return roomToken, nil
}

// invite answers an invite request: without a room, it makes a new
// private room; with one (a private room the connection is in), another
// invite to it. Anonymous mode only: with an auth secret, tokens say who
// may join what.
func (c *conn) invite(room string) (protocol.Invited, error) {
	s := c.s
	if len(s.cfg.AuthSecret) > 0 {
		return protocol.Invited{}, protocol.Errorf(protocol.CodeForbidden, "invites are for servers without --auth-secret; room tokens grant rooms here")
	}
	if room == "" {
		room = protocol.PrivatePrefix + newID("")
	} else {
		if !strings.HasPrefix(room, protocol.PrivatePrefix) {
			return protocol.Invited{}, protocol.Errorf(protocol.CodeInvalidRoom, "only private rooms (%s…) take invites; %q is open to anyone", protocol.PrivatePrefix, room)
		}
		if err := s.hub.CheckMember(c, room); err != nil {
			return protocol.Invited{}, err
		}
	}
	exp := time.Now().Add(s.cfg.InviteTTL)
	inv, err := Token{User: c.user, Room: room, Invite: true, TTL: s.cfg.InviteTTL}.Sign(s.anonKey)
	return protocol.Invited{Room: room, Invite: inv, Expires: exp.UnixMilli()}, err
}

// grants reports whether one of patterns matches room.
func grants(patterns []string, room string) bool {
	for _, p := range patterns {
		if globMatch(p, room) {
			return true
		}
	}
	return false
}

// globMatch matches name against pattern, where * stands for any run of
// characters (room names have no *).
func globMatch(pattern, name string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == name
	}
	prefix, rest := pattern[:star], pattern[star+1:]
	if !strings.HasPrefix(name, prefix) {
		return false
	}
	name = name[len(prefix):]
	for i := len(name); i >= 0; i-- {
		if globMatch(rest, name[i:]) {
			return true
		}
	}
	return false
}

// cleanName makes a display name safe to show: NFKC-folded (no fullwidth
// or styled look-alikes), without control or format characters (bidi
// overrides, zero-width joiners), spaces collapsed, at most 64 characters.
func cleanName(s string) string {
	s = norm.NFKC.String(s)
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == unicode.ReplacementChar:
			return -1
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 64 {
		s = strings.TrimSpace(string(r[:64]))
	}
	return s
}

// nameKey is what two display names that read alike have in common.
func nameKey(name string) string { return strings.ToLower(name) }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + 16 random base32 characters (80 bits).
func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + idEncoding.EncodeToString(b[:])
}

func randomKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}
