package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mount"
)

// FUSEMount is the record of a FUSE view served by a helper process (a CIM
// view, a disk's raw view).
type FUSEMount = fusefs.Record

// Errors of the FUSE view functions.
var (
	// ErrViewNotFound: no FUSE view with that ID (matches fs.ErrNotExist).
	ErrViewNotFound = fusefs.ErrNotFound
	// ErrViewBusy: the view is in use and stays mounted.
	ErrViewBusy = fusefs.ErrBusy
)

// CIMKind is the kind of the FUSE views of CIMs.
const CIMKind = "cim"

// MountCIM mounts the CIM file cim read-only at target (an existing
// directory) through a FUSE view served by a helper process that outlives
// the caller, and returns its record. id names the view (empty: a random
// one); containerID, if set, is recorded with it. It is the plan
// Plan{CIMStep(...)} applied and kept; UnmountView ends it.
func MountCIM(ctx context.Context, cim, target, id, containerID string) (*FUSEMount, error) {
	if id == "" {
		var b [12]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	if _, err := Apply(ctx, Plan{CIMStep(cim, target, id, containerID)}); err != nil {
		return nil, err
	}
	return fusefs.Get(id)
}

// GetView returns the record of the live FUSE view id.
func GetView(id string) (*FUSEMount, error) { return fusefs.Get(id) }

// Views returns the records of the live FUSE views.
func Views() ([]FUSEMount, error) { return fusefs.List() }

// UnmountView unmounts the FUSE view id and waits for its helper to exit. A
// view in use gives an error matching ErrViewBusy and stays.
func UnmountView(ctx context.Context, id string) error { return fusefs.Unmount(ctx, id) }

// CleanupViews removes what crashed helpers and callers left of FUSE views
// and returns the IDs it cleaned.
func CleanupViews(ctx context.Context) ([]string, error) { return fusefs.Cleanup(ctx) }

// UnmountDetach unmounts target lazily (MNT_DETACH): it leaves the namespace
// at once and the kernel releases it when its last user goes. Only for
// cleaning up after a container or a crashed process that is gone. Nothing
// mounted is not an error.
func UnmountDetach(target string) error { return mount.UnmountDetach(target) }
