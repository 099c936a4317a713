package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// clientTLS is the TLS configuration of send and listen: the system's
// roots, plus the certificates in caFile when it is set (a private
// authority, or a self-signed server certificate).
func clientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file: no PEM certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// certReloader serves the certificate in a pair of PEM files and loads it
// again when the files change (checked every reloadEvery) or on SIGHUP, the
// way certificates renewed by certbot or cert-manager are picked up. A pair
// that does not load (a renewal half written) keeps the previous
// certificate in use and is tried again at the next check.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.RWMutex
	cert    *tls.Certificate
	stamp   fileStamp // of the pair cert was loaded from
	loadErr error     // of the last failed load, logged once
}

// reloadEvery is how often the files are checked for a change.
const reloadEvery = 2 * time.Second

type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) stat() (fileStamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{c.ModTime(), k.ModTime(), c.Size(), k.Size()}, nil
}

// load reads the pair, and makes it the one served if it is valid.
func (r *certReloader) load() error {
	st, err := r.stat()
	if err == nil {
		var cert tls.Certificate
		if cert, err = tls.LoadX509KeyPair(r.certFile, r.keyFile); err == nil {
			r.mu.Lock()
			r.cert, r.stamp, r.loadErr = &cert, st, nil
			r.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("tls certificate %s, key %s: %w", r.certFile, r.keyFile, err)
}

// reload loads the pair again if forced or if the files changed, and logs
// the outcome.
func (r *certReloader) reload(force bool) {
	st, err := r.stat()
	r.mu.RLock()
	same := err == nil && st == r.stamp
	r.mu.RUnlock()
	if same && !force {
		return
	}
	if err := r.load(); err != nil {
		r.mu.Lock()
		repeated := r.loadErr != nil && r.loadErr.Error() == err.Error()
		r.loadErr = err
		r.mu.Unlock()
		if !repeated {
			r.log.Warn("tls certificate not reloaded; the previous one stays in use", "err", err)
		}
		return
	}
	r.log.Info("tls certificate loaded", "cert", r.certFile)
}

// watch reloads on SIGHUP and on file changes until ctx ends.
func (r *certReloader) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(reloadEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload(true)
		case <-tick.C:
			r.reload(false)
		}
	}
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}

// serverTLS is the server's TLS configuration. It offers HTTP/1.1 only:
// WebSocket needs it (over HTTP/2 it would need RFC 8441, which browsers
// then use instead of opening an HTTP/1.1 connection).
func (r *certReloader) serverTLS() *tls.Config {
	return &tls.Config{
		GetCertificate: r.getCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
	}
}
