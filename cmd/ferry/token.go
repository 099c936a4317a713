package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferryhq/ferry/server"
)

var randRead = rand.Read

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "token --user ID [--name NAME] [--rooms 'team-*,lobby' | --room ROOM] [--ttl 24h]", stderr)
	user := fs.String("user", "", "user id (the token's sub): letters, digits and - _ . : @ +")
	name := fs.String("name", "", "display name (default: the user id)")
	roomList := fs.String("rooms", "*", "comma-separated rooms the user may join: names, or patterns where * stands for any characters")
	room := fs.String("room", "", "make a room token instead, granting this one room to the user's join (short-lived: see --ttl)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid (the server refuses tokens valid longer than its --auth-max-ttl)")
	audience := fs.String("audience", "", "aud claim (the server's --auth-audience)")
	issuer := fs.String("issuer", "", "iss claim (the server's --auth-issuer)")
	secret := fs.String("auth-secret", "", "the server's --auth-secret")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("token: --user is required")
	}
	if *secret == "" {
		return errors.New("token: --auth-secret (or FERRY_AUTH_SECRET) is required")
	}
	if *name == "" {
		*name = *user
	}
	tok := server.Token{User: *user, Name: *name, Room: *room, TTL: *ttl, Audience: *audience, Issuer: *issuer}
	if *room == "" {
		for _, r := range strings.Split(*roomList, ",") {
			if r = strings.TrimSpace(r); r != "" {
				tok.Rooms = append(tok.Rooms, r)
			}
		}
	}
	t, err := tok.Sign([]byte(*secret))
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, t)
	return nil
}
