package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.Shared(m))
}

// recorder is a testing.TB that records how a helper ended the test. Unlike
// the real ones, its Skipf and Fatalf return, which the helpers allow for.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		env          string
		skip, failed bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	} {
		t.Setenv(testenv.RequireAllEnv, tc.env)
		r := &recorder{TB: t}
		testenv.Require(r, "a thing")
		if r.skipped != tc.skip || r.failed != tc.failed {
			t.Errorf("%s=%q: skipped %v, failed %v; want %v, %v", testenv.RequireAllEnv, tc.env, r.skipped, r.failed, tc.skip, tc.failed)
		}
	}
}

func TestProgram(t *testing.T) {
	t.Setenv(testenv.RequireAllEnv, "")
	dir := t.TempDir()
	prog := filepath.Join(dir, "ferry-test-tool")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	r := &recorder{TB: t}
	if got := testenv.Program(r, "ferry-test-tool"); got != prog || r.skipped || r.failed {
		t.Errorf("Program found %q (skipped %v), want %q", got, r.skipped, prog)
	}
	r = &recorder{TB: t}
	if got := testenv.Program(r, "ferry-no-such-tool"); got != "" || !r.skipped {
		t.Errorf("Program of a missing tool = %q, skipped %v; want a skip", got, r.skipped)
	}
}

func TestChromiumEnv(t *testing.T) {
	t.Setenv(testenv.RequireAllEnv, "1")
	dir := t.TempDir()
	fake := filepath.Join(dir, "my-chrome")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "")
	t.Setenv(testenv.ChromiumEnv, fake)
	r := &recorder{TB: t}
	if got := testenv.Chromium(r); got != fake || r.failed {
		t.Errorf("Chromium with $%s = %q (failed %v: %s), want %q", testenv.ChromiumEnv, got, r.failed, r.msg, fake)
	}
	// Set but wrong is a failure to report, not a reason to look elsewhere.
	t.Setenv(testenv.ChromiumEnv, filepath.Join(dir, "missing"))
	r = &recorder{TB: t}
	if testenv.Chromium(r); !r.failed {
		t.Errorf("Chromium with $%s pointing at nothing did not fail", testenv.ChromiumEnv)
	}
}

func TestFindMinIOEnv(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "minio")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(testenv.MinIOBinEnv, fake)
	if got, err := testenv.FindMinIO(); got != fake || err != nil {
		t.Errorf("FindMinIO = %q, %v; want $%s = %q", got, err, testenv.MinIOBinEnv, fake)
	}
	t.Setenv(testenv.MinIOBinEnv, filepath.Join(dir, "missing"))
	if got, err := testenv.FindMinIO(); err == nil {
		t.Errorf("FindMinIO with $%s pointing at nothing = %q", testenv.MinIOBinEnv, got)
	}
}
