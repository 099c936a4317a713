package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartNATS starts a NATS server with JetStream in the test's process, as
// opts says (users, TLS…), listening on a free port of 127.0.0.1 with its
// files in t.TempDir(), and stops it when the test ends. It returns the
// server's client URL.
func StartNATS(t testing.TB, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testenv: NATS server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("testenv: the NATS server did not start")
	}
	return srv.ClientURL()
}

// TLSFiles are the PEM files of a certificate authority, a server's
// certificate (for 127.0.0.1 and localhost) and a client's, both signed by
// it.
type TLSFiles struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// TLSCerts makes, with openssl as an operator would, an authority and a
// server's and a client's certificates signed by it, in a folder of the
// test's. Without openssl it skips or fails the test as Require does.
func TLSCerts(t testing.TB) TLSFiles {
	t.Helper()
	openssl := Program(t, "openssl")
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	f := TLSFiles{
		CA:         p("ca.pem"),
		ServerCert: p("server.pem"), ServerKey: p("server.key"),
		ClientCert: p("client.pem"), ClientKey: p("client.key"),
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("testenv: openssl %v: %v\n%s", args, err, out)
		}
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	run(append([]string{"req", "-x509", "-days", "2", "-subj", "/CN=ferry test CA", "-keyout", p("ca.key"), "-out", f.CA}, ec...)...)
	for _, c := range []struct{ name, cert, key, ext string }{
		{"server", f.ServerCert, f.ServerKey, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"},
		{"client", f.ClientCert, f.ClientKey, "extendedKeyUsage=clientAuth\n"},
	} {
		ext := p(c.name + ".ext")
		if err := os.WriteFile(ext, []byte(c.ext), 0o600); err != nil {
			t.Fatal(err)
		}
		run(append([]string{"req", "-subj", "/CN=" + c.name, "-keyout", c.key, "-out", p(c.name + ".csr")}, ec...)...)
		run("x509", "-req", "-in", p(c.name+".csr"), "-CA", f.CA, "-CAkey", p("ca.key"), "-CAcreateserial",
			"-days", "2", "-extfile", ext, "-out", c.cert)
	}
	return f
}

// NATSOptions are a NATS server's options to serve TLS with the server's
// certificate and to require a client certificate signed by the
// authority.
func (f TLSFiles) NATSOptions(t testing.TB) *server.Options {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: f.ServerCert, KeyFile: f.ServerKey, CaFile: f.CA, Verify: true})
	if err != nil {
		t.Fatalf("testenv: NATS TLS configuration: %v", err)
	}
	return &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5}
}
