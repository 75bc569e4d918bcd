package wclayer

import (
	"os"
	"testing"

	"github.com/hostcompute/hostcompute/internal/fusefs"
)

// TestMain lets the test binary serve as the FUSE helper of attached disks
// (package fusefs re-executes the running binary).
func TestMain(m *testing.M) {
	fusefs.MaybeRunHelper()
	runActivateChild()
	os.Exit(m.Run())
}
