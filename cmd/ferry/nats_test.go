package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/rooms/jetstream"
)

// `ferry serve --nats` reaches a NATS server that wants TLS with client
// certificates and a user and password, as the flags (and, for the
// password, the environment) say: a room's events land in its stream.
// The wrong password stops the start with the server's refusal.
func TestServeNATSAuthAndTLS(t *testing.T) {
	certs := testenv.TLSCerts(t)
	opts := certs.NATSOptions(t)
	opts.Users = []*server.User{{Username: "ferry", Password: "s3cret"}}
	url := testenv.StartNATS(t, opts)
	flags := []string{"--nats", url, "--nats-user", "ferry",
		"--nats-tls-ca", certs.CA, "--nats-tls-cert", certs.ClientCert, "--nats-tls-key", certs.ClientKey}

	t.Setenv("FERRY_NATS_PASSWORD", "wrong")
	err := run(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, flags...), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--nats") || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("serve with the wrong NATS password: %v, want --nats's authorization violation", err)
	}

	t.Setenv("FERRY_NATS_PASSWORD", "s3cret")
	addr, _ := startServe(t, flags...)
	if res, err := http.Get("http://" + addr + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	w := dialWire(t, addr, "")
	w.request(map[string]any{"t": "join", "room": "lobby"})
	w.request(map[string]any{"t": "emit", "room": "lobby", "event": "chat", "data": map[string]any{"text": "hi"}, "msg_id": "m1"})

	nc, err := jetstream.Connect(jetstream.ConnConfig{URLs: url, User: "ferry", Password: "s3cret",
		TLSCA: certs.CA, TLSCert: certs.ClientCert, TLSKey: certs.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := jetstream.New(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// The room's start record (seq 0), written by the join, and the event.
	if recs, err := j.Load(ctx, "lobby"); err != nil || len(recs) != 2 || recs[0].Seq != 0 || recs[1].Seq != 1 {
		t.Errorf("the lobby's journal over ferry's NATS: %+v, %v; want its start and the one event", recs, err)
	}
}

// --nats-replicas asks for copies only a cluster keeps: refused with the
// embedded server, and the external server's refusal is told.
func TestServeNATSReplicas(t *testing.T) {
	single := testenv.StartNATS(t, &server.Options{})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"embedded", []string{"--nats-replicas", "3"}, "--nats-replicas"},
		{"none", []string{"--nats", single, "--nats-replicas", "0"}, "--nats-replicas"},
		{"one server", []string{"--nats", single, "--nats-replicas", "3"}, "replicas"},
	} {
		err := run(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: serve %v: %v, want an error naming %q", tc.name, tc.args, err, tc.want)
		}
	}
}
