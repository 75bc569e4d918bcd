package host

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/state"
	"github.com/hostcompute/hostcompute/internal/wcowunion"
)

// LayerStateDir returns the directory of layer state: layers/ under the
// state root.
func LayerStateDir() string { return state.Dir(state.Layers) }

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

// Errors, wrapped in an *Error naming the layer, volume or disk.
var (
	// ErrNotActivated: the layer is not active (Prepare, Deactivate).
	ErrNotActivated = fmt.Errorf("host: layer not activated: %w", fs.ErrNotExist)
	// ErrNotPrepared: the layer is not prepared (Unprepare, DetachOverlay).
	ErrNotPrepared = fmt.Errorf("host: layer not prepared: %w", fs.ErrNotExist)
	// ErrStillPrepared: the last Deactivate of a layer still prepared.
	ErrStillPrepared = errors.New("host: layer still prepared")
	// ErrParentsDiffer: a Prepare of a prepared layer named other parents.
	ErrParentsDiffer = errors.New("host: layer prepared with other parents")
	// ErrInvalidArgument: a parameter is missing or wrong.
	ErrInvalidArgument = errors.New("host: invalid argument")
	// ErrCorruptState: a state record cannot be used. The record is kept as
	// it is, for inspection.
	ErrCorruptState = errors.New("host: corrupt state record")
	// ErrUnsupportedDisk: a layer or scratch disk cannot be used as it is (a
	// partition, a scratch that holds neither ext4 nor zeros).
	ErrUnsupportedDisk = errors.New("host: unsupported disk")
	// ErrTooManyLayers: more layers than one union can stack (500).
	ErrTooManyLayers = mount.ErrTooManyLayers
	// ErrAlreadyMounted: the target of a mount, or a writable disk, is in
	// use already. It matches fs.ErrExist.
	ErrAlreadyMounted = fmt.Errorf("host: already mounted: %w", fs.ErrExist)
)

// Error records a failed operation on a layer, volume or disk.
type Error struct {
	Op   string // "activate", "prepare", ...
	Path string // the layer folder, volume or disk
	Err  error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "host: " + e.Op + ": " + e.Err.Error()
	}
	return "host: " + e.Op + " " + e.Path + ": " + e.Err.Error()
}
func (e *Error) Unwrap() error { return e.Err }

// ErrBadTombstones means a layer's tombstones.txt cannot be used: no version
// header, or a name that is not a path inside Files/.
var ErrBadTombstones = wcowunion.ErrBadTombstones
