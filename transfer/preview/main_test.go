package preview

import (
	"testing"

	"go.uber.org/goleak"
)

// The package starts no goroutine; a decoder or a change that does would
// have to stop it before returning.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
