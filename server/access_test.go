package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

var accessSecret = []byte("access-secret")

func sign(t *testing.T, tok server.Token) string {
	t.Helper()
	if tok.TTL == 0 {
		tok.TTL = time.Hour
	}
	s, err := tok.Sign(accessSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signRaw signs any claims, as a token issuer of any kind could.
func signRaw(t *testing.T, key []byte, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialAs connects with a connection token.
func dialAs(t *testing.T, url, token string) *peer {
	t.Helper()
	return dial(t, url+"?token="+token)
}

// handshake returns the status a handshake with token gets.
func handshake(t *testing.T, url, token string) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url+"?token="+token, nil)
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// With an auth secret, a user whose token does not grant a room cannot
// join it, read its history or members, emit to it, or get its files, by
// any path; and what it is told is the same whether or not the room or
// the file exists.
func TestRoomAccess(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{AuthSecret: accessSecret})
	alice := dialAs(t, e.WS, sign(t, server.Token{User: "alice", Rooms: []string{"team-*"}}))
	bobToken := sign(t, server.Token{User: "bob", Rooms: []string{"lobby"}})
	bob := dialAs(t, e.WS, bobToken)

	alice.mustAck(frame{"t": "join", "room": "team-a"})
	alice.mustAck(frame{"t": "emit", "room": "team-a", "event": "chat", "data": "secret plans"})
	alice.mustError(frame{"t": "join", "room": "lobby"}, protocol.CodeForbidden)
	data := randomBytes(3000)
	done, errf := alice.upload("team-a", data, uploadOpts{name: "plans.txt", sha: sha(data)})
	if errf != nil {
		t.Fatal(errf)
	}
	file := done["file"].(map[string]any)
	id := file["id"].(string)

	// bob: the same answers for the room that exists and one that does
	// not, for the file and an id that is nobody's.
	same := func(what string, a, b frame) {
		t.Helper()
		ma, _ := a["message"].(string)
		mb, _ := b["message"].(string)
		ma = strings.ReplaceAll(strings.ReplaceAll(ma, "team-a", "X"), id, "X")
		mb = strings.ReplaceAll(strings.ReplaceAll(mb, "team-zz", "X"), "f_nobody0000000000", "X")
		if a["code"] != b["code"] || ma != mb {
			t.Errorf("%s: %v and %v tell the existing room or file from another", what, a, b)
		}
	}
	bob.mustAck(frame{"t": "join", "room": "lobby"})
	same("join", bob.mustError(frame{"t": "join", "room": "team-a"}, protocol.CodeForbidden),
		bob.mustError(frame{"t": "join", "room": "team-zz"}, protocol.CodeForbidden))
	same("join with history", bob.mustError(frame{"t": "join", "room": "team-a", "since": frame{"epoch": "", "seq": 0}}, protocol.CodeForbidden),
		bob.mustError(frame{"t": "join", "room": "team-zz", "since": frame{"epoch": "", "seq": 0}}, protocol.CodeForbidden))
	same("members", bob.mustError(frame{"t": "members", "room": "team-a"}, protocol.CodeNotMember),
		bob.mustError(frame{"t": "members", "room": "team-zz"}, protocol.CodeNotMember))
	same("emit", bob.mustError(frame{"t": "emit", "room": "team-a", "event": "chat"}, protocol.CodeNotMember),
		bob.mustError(frame{"t": "emit", "room": "team-zz", "event": "chat"}, protocol.CodeNotMember))
	same("file.link", bob.mustError(frame{"t": "file.link", "file": id}, protocol.CodeNotFound),
		bob.mustError(frame{"t": "file.link", "file": "f_nobody0000000000"}, protocol.CodeNotFound))
	same("upload", bob.mustError(frame{"t": "upload.open", "room": "team-a", "name": "x.bin", "size": 10}, protocol.CodeNotMember),
		bob.mustError(frame{"t": "upload.open", "room": "team-zz", "name": "x.bin", "size": 10}, protocol.CodeNotMember))
	get := func(path, token string) (int, string) {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		resp, body := e.download(t, path, h)
		return resp.StatusCode, string(body)
	}
	st1, body1 := get("/files/"+id, bobToken)
	st2, body2 := get("/files/f_nobody0000000000", bobToken)
	if st1 != http.StatusNotFound || st1 != st2 || body1 != body2 {
		t.Errorf("download by a non-member: %d %q; of an unknown id: %d %q", st1, body1, st2, body2)
	}
	// An expired or altered signed link does not help either.
	link := file["url"].(string)
	if st, _ := get(strings.Replace(link, "sig=", "sig=0", 1), ""); st != http.StatusForbidden {
		t.Errorf("altered link: %d", st)
	}
	if st, _ := get(link, ""); st != http.StatusOK {
		t.Errorf("the link alice's room got: %d", st)
	}

	// A room token grants bob team-a: only for bob, only for team-a, only
	// while it lasts, and only as a room token.
	for _, bad := range []struct{ name, token string }{
		{"another user's", sign(t, server.Token{User: "carol", Room: "team-a", TTL: time.Minute})},
		{"another room's", sign(t, server.Token{User: "bob", Room: "team-b", TTL: time.Minute})},
		{"expired", sign(t, server.Token{User: "bob", Room: "team-a", TTL: -time.Minute})},
		{"a connection token", sign(t, server.Token{User: "bob", Rooms: []string{"*"}})},
		{"signed by another secret", func() string {
			s, _ := server.Token{User: "bob", Room: "team-a", TTL: time.Minute}.Sign([]byte("other"))
			return s
		}()},
	} {
		r := bob.request(frame{"t": "join", "room": "team-a", "token": bad.token})
		if r["code"] != protocol.CodeForbidden {
			t.Errorf("join with %s room token: %v", bad.name, r)
		}
	}
	roomToken := sign(t, server.Token{User: "bob", Room: "team-a", TTL: time.Minute})
	if st := handshake(t, e.WS, roomToken); st != http.StatusUnauthorized {
		t.Errorf("a room token opened a connection: %d", st)
	}
	bob.mustAck(frame{"t": "join", "room": "team-a", "token": roomToken, "since": frame{"epoch": "", "seq": 0}})
	if ev := bob.next(func(f frame) bool { return f["t"] == "event" }); ev["data"] != "secret plans" {
		t.Errorf("history after joining with a room token: %v", ev)
	}
	bob.mustAck(frame{"t": "file.link", "file": id})
}

// Tokens: an expiry is required and ends the connection with 4500; aud,
// iss, the longest lifetime and the user id are checked.
func TestTokenLifecycle(t *testing.T) {
	_, url := startServer(t, server.Config{AuthSecret: accessSecret, AuthAudience: "ferry", AuthIssuer: "https://id.example", MaxTokenTTL: 2 * time.Hour})
	ok := server.Token{User: "alice", Rooms: []string{"*"}, Audience: "ferry", Issuer: "https://id.example", TTL: time.Hour}
	raw := func(c jwt.MapClaims) string { return signRaw(t, accessSecret, c) }
	now := time.Now()
	for _, tc := range []struct {
		name  string
		token string
		want  int
	}{
		{"valid", sign(t, ok), http.StatusSwitchingProtocols},
		{"no expiry", raw(jwt.MapClaims{"sub": "alice", "aud": "ferry", "iss": "https://id.example", "iat": now.Unix()}), http.StatusUnauthorized},
		{"another audience", sign(t, server.Token{User: "alice", Audience: "other", Issuer: ok.Issuer, TTL: time.Hour}), http.StatusUnauthorized},
		{"no audience", sign(t, server.Token{User: "alice", Issuer: ok.Issuer, TTL: time.Hour}), http.StatusUnauthorized},
		{"another issuer", sign(t, server.Token{User: "alice", Audience: "ferry", Issuer: "https://evil.example", TTL: time.Hour}), http.StatusUnauthorized},
		{"too long", sign(t, server.Token{User: "alice", Audience: "ferry", Issuer: ok.Issuer, TTL: 3 * time.Hour}), http.StatusUnauthorized},
		{"too long without iat", raw(jwt.MapClaims{"sub": "alice", "aud": "ferry", "iss": ok.Issuer, "exp": now.Add(3 * time.Hour).Unix()}), http.StatusUnauthorized},
		{"issued in the future", raw(jwt.MapClaims{"sub": "alice", "aud": "ferry", "iss": ok.Issuer, "iat": now.Add(time.Hour).Unix(), "exp": now.Add(90 * time.Minute).Unix()}), http.StatusUnauthorized},
		{"user id with a space", raw(jwt.MapClaims{"sub": "alice smith", "aud": "ferry", "iss": ok.Issuer, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}), http.StatusUnauthorized},
		{"user id with a newline", raw(jwt.MapClaims{"sub": "alice\nadmin", "aud": "ferry", "iss": ok.Issuer, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}), http.StatusUnauthorized},
		{"empty user id", raw(jwt.MapClaims{"sub": "", "aud": "ferry", "iss": ok.Issuer, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}), http.StatusUnauthorized},
		{"none algorithm", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "aud": "ferry", "iss": ok.Issuer, "exp": now.Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}(), http.StatusUnauthorized},
	} {
		if st := handshake(t, url, tc.token); st != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, st, tc.want)
		}
	}
	if _, err := (server.Token{User: "bad id", TTL: time.Hour}).Sign(accessSecret); err == nil {
		t.Error("signed a token for a user id with a space")
	}

	// A token that ends while the connection is open closes it with 4500.
	short := ok
	short.TTL = 1500 * time.Millisecond
	p := dialAs(t, url, sign(t, short))
	start := time.Now()
	_ = p.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := p.ws.ReadMessage()
		if err == nil {
			continue
		}
		ce, isClose := err.(*websocket.CloseError)
		if !isClose || ce.Code != protocol.CloseUnauthorized {
			t.Fatalf("after the token's end: %v, want close 4500", err)
		}
		break
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed %v after the token's end", d)
	}
}

// Anonymous tokens expire, and each connection hands out a renewed one.
func TestAnonymousTokens(t *testing.T) {
	key := []byte("anonymous-key-of-32-bytes-length")
	_, url := startServer(t, server.Config{AnonKey: key, AnonTTL: time.Hour})
	first := dial(t, url)
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(first.welcome.Token, &c); err != nil || c.ExpiresAt == nil {
		t.Fatalf("anonymous token %q: %v, no expiry", first.welcome.Token, err)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("anonymous token valid for %v, want an hour", d)
	}
	again := dial(t, url+"?token="+first.welcome.Token)
	if again.welcome.User != first.welcome.User || again.welcome.Token == "" {
		t.Fatalf("came back as %q, want %q", again.welcome.User, first.welcome.User)
	}
	raw := func(c jwt.MapClaims) string { return signRaw(t, key, c) }
	now := time.Now()
	for _, tc := range []struct {
		name  string
		token string
		keeps bool
	}{
		{"expired", raw(jwt.MapClaims{"sub": "u_old", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}), false},
		{"without expiry, issued within the lifetime", raw(jwt.MapClaims{"sub": "u_recent", "iat": now.Add(-time.Minute).Unix()}), true},
		{"without expiry, issued before it", raw(jwt.MapClaims{"sub": "u_ancient", "iat": now.Add(-2 * time.Hour).Unix()}), false},
	} {
		var want jwt.RegisteredClaims
		_, _, _ = jwt.NewParser().ParseUnverified(tc.token, &want)
		p := dial(t, url+"?token="+tc.token)
		if kept := p.welcome.User == want.Subject; kept != tc.keeps {
			t.Errorf("%s: user %q (token's %q), want kept=%v", tc.name, p.welcome.User, want.Subject, tc.keeps)
		}
	}
}

// Without an auth secret, private rooms take an invite made by a member;
// a join with one returns a pass for the user's later joins.
func TestPrivateRooms(t *testing.T) {
	key := []byte("anonymous-key-of-32-bytes-length")
	_, url := startServer(t, server.Config{AnonKey: key})
	alice := dial(t, url+"?name=alice")
	inv := alice.mustAck(frame{"t": "invite"})["data"].(map[string]any)
	room, invite := inv["room"].(string), inv["invite"].(string)
	if !strings.HasPrefix(room, protocol.PrivatePrefix) || invite == "" || inv["expires"].(float64) < float64(time.Now().Add(6*24*time.Hour).UnixMilli()) {
		t.Fatalf("invite %v", inv)
	}
	refused := alice.mustError(frame{"t": "join", "room": room}, protocol.CodeForbidden)
	pass := alice.mustAck(frame{"t": "join", "room": room, "token": invite})["data"].(map[string]any)["pass"].(string)
	alice.mustAck(frame{"t": "emit", "room": room, "event": "chat", "data": "private words"})

	bob := dial(t, url+"?name=bob")
	bobPass := bob.mustAck(frame{"t": "join", "room": room, "token": invite})["data"].(map[string]any)["pass"].(string)
	carol := dial(t, url+"?name=carol")
	// The same refusal for this room and one that was never made.
	other := carol.mustError(frame{"t": "join", "room": protocol.PrivatePrefix + "nothinghere0000"}, protocol.CodeForbidden)
	if strings.ReplaceAll(refused["message"].(string), room, "R") != strings.ReplaceAll(other["message"].(string), protocol.PrivatePrefix+"nothinghere0000", "R") {
		t.Errorf("refusals tell rooms apart: %v / %v", refused, other)
	}
	carol.mustError(frame{"t": "join", "room": room, "token": bobPass}, protocol.CodeForbidden) // bob's, not hers
	carol.mustError(frame{"t": "invite", "room": room}, protocol.CodeNotMember)
	expired, _ := server.Token{User: alice.welcome.User, Room: room, Invite: true, TTL: -time.Minute}.Sign(key)
	carol.mustError(frame{"t": "join", "room": room, "token": expired}, protocol.CodeForbidden)
	forged, _ := server.Token{User: alice.welcome.User, Room: room, Invite: true, TTL: time.Hour}.Sign([]byte("not the server's key, 32 bytes.."))
	carol.mustError(frame{"t": "join", "room": room, "token": forged}, protocol.CodeForbidden)
	// An invite is no connection token: it does not make carol alice.
	if p := dial(t, url+"?token="+invite); p.welcome.User == alice.welcome.User {
		t.Fatal("an invite opened a connection as its maker")
	}
	// bob invites carol.
	second := bob.mustAck(frame{"t": "invite", "room": room})["data"].(map[string]any)["invite"].(string)
	carol.mustAck(frame{"t": "join", "room": room, "token": second, "since": frame{"epoch": "", "seq": 0}})
	if ev := carol.next(func(f frame) bool { return f["t"] == "event" }); ev["data"] != "private words" {
		t.Fatalf("carol's history: %v", ev)
	}
	// alice comes back on another connection with her pass.
	again := dial(t, url+"?token="+alice.welcome.Token)
	again.mustAck(frame{"t": "join", "room": room, "token": pass})
	// Open rooms stay open and take no invites.
	carol.mustAck(frame{"t": "join", "room": "lobby"})
	carol.mustError(frame{"t": "invite", "room": "lobby"}, protocol.CodeInvalidRoom)

	// With an auth secret, tokens decide: no invites.
	_, authed := startServer(t, server.Config{AuthSecret: accessSecret})
	dialAs(t, authed, sign(t, server.Token{User: "dave", Rooms: []string{"*"}})).mustError(frame{"t": "invite"}, protocol.CodeForbidden)
}
