package host

import "github.com/hostcompute/hostcompute/internal/mount"

// MaxLowerLayers is the largest number of lower layers one union can have
// (the kernel's OVL_MAX_STACK).
const MaxLowerLayers = mount.MaxLowerLayers

// Errors of Unmount.
var (
	// ErrBusy: the file system is in use and stays mounted.
	ErrBusy = mount.ErrBusy
	// ErrNotMounted: nothing is mounted at the target.
	ErrNotMounted = mount.ErrNotMounted
)

// Unmount unmounts the file system at target (not lazily: a busy one gives
// an error matching ErrBusy, a target with nothing mounted one matching
// ErrNotMounted).
func Unmount(target string) error { return mount.Unmount(target) }
