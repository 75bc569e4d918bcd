package hostcompute

import (
	"os"
	"path/filepath"
	"testing"
)

// runWithComputeState runs the tests with containers' state in a temporary
// directory, removed afterwards.
func runWithComputeState(m *testing.M) int {
	if os.Getenv("HOSTCOMPUTE_COMPUTE_STATE_DIR") == "" {
		d, err := os.MkdirTemp("", "hostcompute-root-test")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(d)
		os.Setenv("HOSTCOMPUTE_COMPUTE_STATE_DIR", filepath.Join(d, "compute"))
	}
	return m.Run()
}
