// Package layermount activates and prepares writable layers, the engine under
// wclayer's ActivateLayer/PrepareLayer and computestorage's filter functions.
//
// Activate attaches a layer's scratch disk (internal/attach) and mounts its
// file system at the layer's volume path; Prepare mounts an overlayfs union of
// the parent layer folders (internal/wcowunion: Files/ plus tombstone
// whiteouts) with the volume's Files/ as the writable layer at the layer's
// union path. AttachOverlay mounts such a union on top of an already mounted
// volume, so that the volume's own path shows it.
//
// # Where
//
// Each layer or volume has a state directory StateDir()/<GUID>/, where GUID is
// guid.NameToGuid of its absolute path with symbolic links resolved (so
// layers with the same folder name in different places do not collide, and
// one folder reached by two paths is one layer): state.json (the record), lock (an flock),
// volume/ (the volume path) and union/ (the union path). StateDir is
// /run/hostcompute/layers unless $HOSTCOMPUTE_LAYER_STATE_DIR names another.
//
// # Counting and crashes
//
// Activations and preparations are counted in state.json, written through a
// synced temporary file and a rename under the entry's lock, so two Activate
// calls need two Deactivate calls, in any processes. Every call first
// reconciles the record with the kernel's mount table: a union mounted with no
// preparation counted, and a volume or attachment left by a first Activate
// that died before it saved its count (the record says Pending), are undone.
// A counted mount that vanished (unmounted behind our back) is made again by
// the next Activate or Prepare. The entry is removed when nothing is held.
//
// Deactivate of the last activation while preparations are outstanding is
// refused with ErrStillPrepared: Unprepare first (the order Windows requires).
package layermount

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DefaultStateDir holds one directory per active layer or volume unless
// $HOSTCOMPUTE_LAYER_STATE_DIR names another.
const DefaultStateDir = "/run/hostcompute/layers"

// StateDir returns the directory of layer state.
func StateDir() string {
	if d := os.Getenv("HOSTCOMPUTE_LAYER_STATE_DIR"); d != "" {
		return d
	}
	return DefaultStateDir
}

// Names in a layer's state directory.
const (
	VolumeDir = "volume" // the scratch volume's mount point
	UnionDir  = "union"  // the union's mount point
)

// Mount sources of the unions, naming their owner in mountinfo.
const (
	UnionSourcePrefix   = "hcs-layer:"
	OverlaySourcePrefix = "hcs-overlay:"
)

// Errors, wrapped in an *Error naming the layer or volume.
var (
	// ErrNotActivated: the layer is not active (Prepare, Deactivate).
	ErrNotActivated = fmt.Errorf("layermount: layer not activated: %w", fs.ErrNotExist)
	// ErrNotPrepared: the layer is not prepared (Unprepare, DetachOverlay).
	ErrNotPrepared = fmt.Errorf("layermount: layer not prepared: %w", fs.ErrNotExist)
	// ErrStillPrepared: the last Deactivate of a layer still prepared.
	ErrStillPrepared = errors.New("layermount: layer still prepared")
	// ErrParentsDiffer: a Prepare of a prepared layer named other parents.
	ErrParentsDiffer = errors.New("layermount: layer prepared with other parents")
	// ErrInvalidArgument: a parameter is missing or wrong.
	ErrInvalidArgument = errors.New("layermount: invalid argument")
	// ErrCorruptState: a state record cannot be used.
	ErrCorruptState = errors.New("layermount: corrupt state record")
)

// Error records a failed operation on a layer or volume.
type Error struct {
	Op   string // "activate", "prepare", ...
	Path string // the layer folder or volume
	Err  error
}

func (e *Error) Error() string { return "layermount: " + e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }
