package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferryhq/ferry/server"
)

var randRead = rand.Read

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "token --user ID [--name NAME] [--ttl 24h]", stderr)
	user := fs.String("user", "", "user id (the token's sub)")
	name := fs.String("name", "", "display name (default: the user id)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid (0: no expiry)")
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
	t, err := server.SignToken([]byte(*secret), *user, *name, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}
