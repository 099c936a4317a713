package jetstream

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnConfig says how to reach NATS servers that ferry does not run, with
// the means of authentication and TLS NATS users know from the nats CLI
// and the servers' own configuration. Zero values mean the documented
// defaults; at most one of Creds, NKey, User and Token.
type ConnConfig struct {
	// URLs lists the servers, comma-separated (nats://host:4222,
	// tls://host:4222). A URL may carry a user and password
	// (nats://user:pass@host:4222) or a token (nats://token@host:4222).
	// Required.
	URLs string
	// Name is the connection's name, shown by the servers' monitoring.
	// Default "ferry".
	Name string
	// Creds is a credentials file (a user JWT and its nkey seed), as
	// `nsc` writes for a server in operator mode.
	Creds string
	// NKey is a file holding a user's nkey seed.
	NKey string
	// User and Password authenticate with a user of the servers'
	// configuration.
	User, Password string
	// Token authenticates with the servers' authorization token.
	Token string
	// TLSCA is a PEM file of the authorities the servers' certificates
	// are checked against, instead of the system's. Setting it, or TLSCert, requires
	// TLS.
	TLSCA string
	// TLSCert and TLSKey are a PEM client certificate and its key, for
	// servers that verify their clients. They are read again at each
	// reconnection, so a renewed certificate is picked up.
	TLSCert, TLSKey string
	// Log receives disconnections, reconnections and asynchronous errors.
	// Default: discard.
	Log *slog.Logger
}

// Reconnection: after a server is lost the connection tries the others
// at once, then waits between rounds, from reconnectMin doubling up to
// reconnectMax, a quarter of it random so that the nodes of a cluster that
// lost their server together do not come back in step. It never stops
// trying: a ferry node is of no use without NATS, and its journal's calls
// fail (and /readyz says so) until NATS is back.
const (
	reconnectMin = 250 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// Connect connects to the NATS servers cfg names, reconnecting for as long
// as the process runs. The first connection is not retried: a wrong URL or
// credentials are told at the start.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	return nats.Connect(cfg.URLs, opts...)
}

func (cfg ConnConfig) options() ([]nats.Option, error) {
	if cfg.URLs == "" {
		return nil, errors.New("jetstream: no NATS server URL")
	}
	auths := 0
	for _, set := range []bool{cfg.Creds != "", cfg.NKey != "", cfg.User != "" || cfg.Password != "", cfg.Token != ""} {
		if set {
			auths++
		}
	}
	if auths > 1 {
		return nil, errors.New("jetstream: credentials file, nkey, user and token are exclusive: give one")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("jetstream: a TLS client certificate needs its key, and the key its certificate")
	}
	if cfg.Name == "" {
		cfg.Name = "ferry"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS: disconnected", "server", nc.ConnectedUrlRedacted(), "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS: reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("NATS: error", "err", err)
		}),
	}
	switch {
	case cfg.Creds != "":
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	case cfg.NKey != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKey)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	case cfg.User != "" || cfg.Password != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return opts, nil
}

// reconnectDelay is the wait before the attempts'th round of reconnection.
func reconnectDelay(attempts int) time.Duration {
	d := reconnectMax
	if attempts < 8 {
		d = min(reconnectMin<<max(attempts-1, 0), reconnectMax)
	}
	return d - time.Duration(rand.Int64N(int64(d/4)+1))
}
