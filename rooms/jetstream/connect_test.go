package jetstream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/ferryhq/ferry/internal/testenv"
)

// useConn checks that a connection made by Connect is one ferry can keep
// rooms' history over: the journal's stream can be created on it.
func useConn(t *testing.T, cfg ConnConfig) {
	t.Helper()
	nc, err := Connect(cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := New(ctx, nc, Config{}); err != nil {
		t.Fatalf("New over the connection: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Each way a NATS user authenticates reaches a server that requires it,
// and the wrong secret is refused with the server's word for it.
func TestConnectAuth(t *testing.T) {
	t.Run("user and password", func(t *testing.T) {
		url := testenv.StartNATS(t, &server.Options{Users: []*server.User{{Username: "ferry", Password: "s3cret"}}})
		useConn(t, ConnConfig{URLs: url, User: "ferry", Password: "s3cret"})
		// In the URL, as NATS users also write it.
		useConn(t, ConnConfig{URLs: strings.Replace(url, "nats://", "nats://ferry:s3cret@", 1)})
		_, err := Connect(ConnConfig{URLs: url, User: "ferry", Password: "wrong"})
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("Connect with a wrong password: %v, want an authorization violation", err)
		}
	})
	t.Run("token", func(t *testing.T) {
		url := testenv.StartNATS(t, &server.Options{Authorization: "tok-1"})
		useConn(t, ConnConfig{URLs: url, Token: "tok-1"})
		if _, err := Connect(ConnConfig{URLs: url}); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("Connect without the token: %v, want an authorization violation", err)
		}
	})
	t.Run("nkey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		url := testenv.StartNATS(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
		useConn(t, ConnConfig{URLs: url, NKey: writeFile(t, "user.nk", string(seed))})
		other, _ := nkeys.CreateUser()
		otherSeed, _ := other.Seed()
		if _, err := Connect(ConnConfig{URLs: url, NKey: writeFile(t, "other.nk", string(otherSeed))}); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("Connect with an unknown nkey: %v, want an authorization violation", err)
		}
	})
	t.Run("credentials file", func(t *testing.T) {
		opts, creds := operatorMode(t)
		url := testenv.StartNATS(t, opts)
		useConn(t, ConnConfig{URLs: url, Creds: creds})
		if _, err := Connect(ConnConfig{URLs: url}); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("Connect without the credentials: %v, want an authorization violation", err)
		}
	})
}

// operatorMode returns a server's options trusting an operator, with an
// account allowed JetStream, and a credentials file of a user of that
// account, as `nsc` would make them.
func operatorMode(t *testing.T) (*server.Options, string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := op.PublicKey()
	opClaims := jwt.NewOperatorClaims(opPub)
	account := func(js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, _ := kp.PublicKey()
		c := jwt.NewAccountClaims(pub)
		if js {
			c.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := c.Encode(op)
		must(err)
		return kp, pub, token
	}
	_, sysPub, sysJWT := account(false)
	acc, accPub, accJWT := account(true)
	resolver := &server.MemAccResolver{}
	must(resolver.Store(sysPub, sysJWT))
	must(resolver.Store(accPub, accJWT))

	user, err := nkeys.CreateUser()
	must(err)
	userPub, _ := user.PublicKey()
	userJWT, err := jwt.NewUserClaims(userPub).Encode(acc)
	must(err)
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	return &server.Options{
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		SystemAccount:    sysPub,
		AccountResolver:  resolver,
	}, writeFile(t, "user.creds", string(creds))
}

// TLS with an authority of the operator's (openssl-made): the server's
// certificate is checked against it, and a server that verifies its
// clients takes ferry's certificate and refuses a client without one.
func TestConnectTLS(t *testing.T) {
	certs := testenv.TLSCerts(t)
	url := testenv.StartNATS(t, certs.NATSOptions(t))
	useConn(t, ConnConfig{URLs: url, TLSCA: certs.CA, TLSCert: certs.ClientCert, TLSKey: certs.ClientKey})

	for name, cfg := range map[string]ConnConfig{
		"without a client certificate": {URLs: url, TLSCA: certs.CA},
		"without the authority":        {URLs: url, TLSCert: certs.ClientCert, TLSKey: certs.ClientKey},
	} {
		if nc, err := Connect(cfg); err == nil {
			nc.Close()
			t.Errorf("Connect %s succeeded", name)
		}
	}
}

// Contradictory settings are refused before any connection is tried.
func TestConnectConfigErrors(t *testing.T) {
	for name, cfg := range map[string]ConnConfig{
		"no URL":              {},
		"creds and user":      {URLs: "nats://127.0.0.1:1", Creds: "x.creds", User: "u"},
		"nkey and token":      {URLs: "nats://127.0.0.1:1", NKey: "x.nk", Token: "t"},
		"certificate alone":   {URLs: "nats://127.0.0.1:1", TLSCert: "c.pem"},
		"key alone":           {URLs: "nats://127.0.0.1:1", TLSKey: "k.pem"},
		"missing nkey file":   {URLs: "nats://127.0.0.1:1", NKey: filepath.Join(t.TempDir(), "none.nk")},
		"missing CA file":     {URLs: "nats://127.0.0.1:1", TLSCA: filepath.Join(t.TempDir(), "none.pem")},
		"password of no user": {URLs: "nats://127.0.0.1:1", Password: "p", Token: "t"},
	} {
		if nc, err := Connect(cfg); err == nil {
			nc.Close()
			t.Errorf("%s: Connect succeeded", name)
		}
	}
}

// The wait between reconnection rounds doubles from reconnectMin up to
// reconnectMax, never past it, less up to a quarter at random.
func TestReconnectDelay(t *testing.T) {
	nominal := reconnectMin
	for attempts := 1; attempts <= 20; attempts++ {
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 200 {
			d := reconnectDelay(attempts)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < nominal*3/4 || hi > nominal || lo == hi {
			t.Errorf("attempt %d: delays from %v to %v, want random within [%v, %v]", attempts, lo, hi, nominal*3/4, nominal)
		}
		nominal = min(2*nominal, reconnectMax)
	}
}
