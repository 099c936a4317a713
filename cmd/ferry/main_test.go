package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/testenv"
)

// TestMain stops the shared MinIO after the tests, then fails on leaked
// goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.Shared(m))
}
