// Package testenv gives ferry's tests the outside programs they need: a MinIO
// server, a Chromium, docker-compose. A test asks for one and either gets it or
// is skipped, so `go test ./...` passes on a bare machine; CI sets
// FERRY_REQUIRE_ALL=1 to turn every such skip into a failure, so that a
// missing program cannot hide untested code.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireAllEnv is the environment variable that, set to "1", makes missing
// dependencies fail tests instead of skipping them.
const RequireAllEnv = "FERRY_REQUIRE_ALL"

// Require records that the test cannot run because what is missing: it skips
// the test, or fails it when FERRY_REQUIRE_ALL=1. It does not return.
func Require(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(RequireAllEnv) == "1" {
		t.Fatalf("testenv: %s is missing (and %s=1)", what, RequireAllEnv)
		return
	}
	t.Skipf("testenv: %s is missing (%s=1 makes this a failure)", what, RequireAllEnv)
}

// Program returns the path of the program name found in PATH, or skips or
// fails the test as Require does.
func Program(t testing.TB, name string) string {
	t.Helper()
	path, err := lookup("", name)
	if err != nil {
		Require(t, fmt.Sprintf("program %q (%v)", name, err))
		return ""
	}
	return path
}

// ChromiumEnv names the environment variable that points at a Chromium or
// Chrome binary, for machines where it is not in PATH under a usual name.
const ChromiumEnv = "FERRY_CHROMIUM"

// Chromium returns the path of a Chromium or Chrome: $FERRY_CHROMIUM, else the
// first of chromium, chromium-browser, google-chrome, google-chrome-stable in
// PATH. Missing, it skips or fails the test as Require does.
func Chromium(t testing.TB) string {
	t.Helper()
	path, err := lookup(ChromiumEnv, "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
	if err != nil {
		Require(t, fmt.Sprintf("Chromium (%v)", err))
		return ""
	}
	return path
}

// CentrifugoEnv names the environment variable that points at a Centrifugo
// binary, the peer `ferry bench fanout --peer centrifugo` measures.
const CentrifugoEnv = "FERRY_CENTRIFUGO"

// Centrifugo returns the path of a Centrifugo server: $FERRY_CENTRIFUGO, else
// centrifugo in PATH. Missing, it skips or fails the test as Require does.
func Centrifugo(t testing.TB) string {
	t.Helper()
	path, err := lookup(CentrifugoEnv, "centrifugo")
	if err != nil {
		Require(t, fmt.Sprintf("Centrifugo (%v)", err))
		return ""
	}
	return path
}

// lookup returns the program named by the environment variable env if set,
// else the first of names found in PATH. A variable that is set but points at
// nothing usable is an error, not a reason to look further: someone meant it.
func lookup(env string, names ...string) (string, error) {
	if env != "" {
		if p := os.Getenv(env); p != "" {
			found, err := exec.LookPath(p)
			if err != nil {
				return "", fmt.Errorf("$%s=%q: %w", env, p, err)
			}
			return found, nil
		}
	}
	var errs []error
	for _, name := range names {
		p, err := exec.LookPath(name)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// Ferry builds the ferry command, without the race detector, into a
// folder of the test's, for tests that run it as a process of its own (its
// memory as users see it, or `ferry send` as users run it).
func Ferry(t testing.TB) string {
	t.Helper()
	goBin := Program(t, "go")
	bin := filepath.Join(t.TempDir(), "ferry")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/ferryhq/ferry/cmd/ferry").CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: go build ./cmd/ferry: %v\n%s", err, out)
	}
	return bin
}
