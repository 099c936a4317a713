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
)

type identity struct {
	user, name string
	// token is handed to anonymous users so they can come back as themselves.
	token string
}

// claims are the token's claims: sub is the user id, name the display name.
type claims struct {
	Name string `json:"name,omitempty"`
	jwt.RegisteredClaims
}

// SignToken returns an HS256 token for user, valid for ttl (0: no expiry; a
// negative ttl makes a token that has already expired).
func SignToken(secret []byte, user, name string, ttl time.Duration) (string, error) {
	if user == "" {
		return "", errors.New("a token needs a user id")
	}
	c := claims{Name: name, RegisteredClaims: jwt.RegisteredClaims{
		Subject:  user,
		IssuedAt: jwt.NewNumericDate(time.Now()),
	}}
	if ttl != 0 {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

func parseToken(secret []byte, token string) (claims, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		return claims{}, err
	}
	if c.Subject == "" || len(c.Subject) > 128 {
		return claims{}, errors.New("token has no usable subject")
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
		c, err := parseToken(s.cfg.AuthSecret, token)
		if err != nil {
			return identity{}, fmt.Errorf("bad token: %w", err)
		}
		name := cleanName(c.Name)
		if name == "" {
			name = c.Subject
		}
		return identity{user: c.Subject, name: name}, nil
	}
	id := identity{user: "", name: want}
	if token != "" {
		if c, err := parseToken(s.anonKey, token); err == nil {
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
	t, err := SignToken(s.anonKey, id.user, id.name, 0)
	if err != nil {
		return identity{}, err
	}
	id.token = t
	return id, nil
}

// cleanName makes a display name safe to show: printable, trimmed, at most
// 64 characters.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64])
	}
	return s
}

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
