package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferryhq/ferry/internal/testenv"
)

// selfSigned makes, with openssl as a person running a private ferry
// would, a self-signed certificate for 127.0.0.1 and localhost named cn,
// and writes it to certPath and keyPath (through a rename, as renewal tools
// do).
func selfSigned(t *testing.T, cn, certPath, keyPath string) {
	t.Helper()
	openssl := testenv.Program(t, "openssl")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	out, err := exec.Command(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-nodes", "-days", "2", "-subj", "/CN="+cn, "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
		"-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	for from, to := range map[string]string{key: keyPath, cert: certPath} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
}

// servedName connects to addr with TLS, trusting caFile, and returns the
// common name of the certificate the server presents.
func servedName(t *testing.T, addr, caFile string) (string, error) {
	t.Helper()
	tc, err := clientTLS(caFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// ferry send and listen over wss://: the file goes through, the download
// over https is checked against its SHA-256, and a client that does not
// trust the certificate is refused. A renewed certificate is served
// without a restart.
func TestTLSSendAndListen(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	selfSigned(t, "ferry-one", cert, key)
	addr, _ := startServe(t, "--tls-cert", cert, "--tls-key", key)
	url := "wss://" + addr

	out := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var lout, lerr safeBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"listen", "--server", url, "--ca-file", cert, "--room", "secure", "--out", out}, &lout, &lerr)
	}()
	waitOutput(t, &lerr, "listening")

	data := make([]byte, 3<<20+17)
	_, _ = rand.Read(data)
	file := filepath.Join(t.TempDir(), "report.bin")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var sout, serr bytes.Buffer
	if err := run(t.Context(), []string{"send", "--server", url, "--ca-file", cert, "--room", "secure", "--resume=false", file}, &sout, &serr); err != nil {
		t.Fatalf("send: %v\n%s", err, serr.String())
	}
	waitOutput(t, &lerr, "saved")
	got, err := os.ReadFile(filepath.Join(out, "report.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("listen saved %d bytes (%v), want the %d sent", len(got), err, len(data))
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("listen: %v", err)
	}

	// Without --ca-file the certificate is checked against the system's
	// roots, and refused.
	serr.Reset()
	err = run(t.Context(), []string{"send", "--server", url, "--room", "secure", "--text", "hi"}, &sout, &serr)
	if err == nil || !strings.Contains(err.Error()+serr.String(), "certificate") {
		t.Fatalf("send trusting nothing: %v\n%s; want a certificate error", err, serr.String())
	}

	// Renewed in place: served within a few seconds, no restart.
	selfSigned(t, "ferry-two", cert, key)
	deadline := time.Now().Add(3 * reloadEvery)
	for {
		name, err := servedName(t, addr, cert)
		if err == nil && name == "ferry-two" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after renewal the server presents %q (%v), want ferry-two", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sout.Reset()
	serr.Reset()
	if err := run(t.Context(), []string{"send", "--server", url, "--ca-file", cert, "--room", "secure", "--text", "after renewal"}, &sout, &serr); err != nil {
		t.Fatalf("send after renewal: %v\n%s", err, serr.String())
	}
}

// A pair that does not load (a renewal half written) leaves the served
// certificate as it was; SIGHUP loads the files at once.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	selfSigned(t, "first", cert, key)
	var logs safeBuffer
	r, err := newCertReloader(cert, key, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		c, _ := r.getCertificate(nil)
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return x.Subject.CommonName
	}
	// Half written: the new certificate, the old key.
	other := t.TempDir()
	selfSigned(t, "second", filepath.Join(other, "cert.pem"), filepath.Join(other, "key.pem"))
	if err := os.Rename(filepath.Join(other, "cert.pem"), cert); err != nil {
		t.Fatal(err)
	}
	r.reload(false)
	if got := served(); got != "first" || !strings.Contains(logs.String(), "previous one stays in use") {
		t.Fatalf("serving %q after a mismatched pair; log:\n%s", got, logs.String())
	}
	if err := os.Rename(filepath.Join(other, "key.pem"), key); err != nil {
		t.Fatal(err)
	}
	r.reload(false)
	if got := served(); got != "second" {
		t.Fatalf("serving %q once the pair matches, want second", got)
	}
	// Forced (SIGHUP): loads even when the files look unchanged.
	selfSigned(t, "third", cert, key)
	r.mu.Lock()
	r.stamp, _ = r.stat()
	r.mu.Unlock()
	r.reload(false)
	if got := served(); got != "second" {
		t.Fatalf("unforced reload of files with the recorded stamp served %q", got)
	}
	r.reload(true)
	if got := served(); got != "third" {
		t.Fatalf("forced reload served %q, want third", got)
	}
	if _, err := newCertReloader(cert, "", nil); err == nil {
		t.Fatal("a certificate without a key was accepted")
	}
}

// The page over https: chat and an image between two browsers, through
// ferry.js over wss://. Chromium trusts only this certificate's key.
func TestBrowserOverTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	selfSigned(t, "ferry-browser", cert, key)
	addr, _ := startServe(t, "--tls-cert", cert, "--tls-key", key)
	base := "https://" + addr + "/"
	bs := newBrowsersWith(t, []chromedp.ExecAllocatorOption{chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, cert))}, "alice", "bob")
	alice, bob := bs[0], bs[1]
	alice.enter(base, "secure")
	bob.enter(base, "secure")
	if proto := alice.eval(`location.protocol`); proto != "https:" {
		t.Fatalf("page at %s", proto)
	}
	alice.fill("#message", "over tls", "#send")
	bob.wait("alice's message", `[...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === 'over tls')`, 10*time.Second)
	path, _ := testJPEG(t)
	alice.do("pick a file", chromedp.SetUploadFiles("#file-input", []string{path}))
	bob.wait("the preview", `(() => { const i = document.querySelector('img[data-testid=preview]'); return i && i.complete && i.naturalWidth === 320; })()`, 20*time.Second)
	if src := bob.eval(`document.querySelector('img[data-testid=preview]').src`); !strings.HasPrefix(src, base) {
		t.Fatalf("preview from %s, want %s…", src, base)
	}
}

// spkiHash is the base64 SHA-256 of the certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list takes it.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM in %s", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
