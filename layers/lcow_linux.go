package layers

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
)

// Names inside guestRoot (the scratch mount) of MountLCOWLayers.
const (
	RootfsDir = host.LCOWRootfsDir // the union
	UpperDir  = host.LCOWUpperDir  // the union's writable layer
	WorkDir   = host.LCOWWorkDir   // overlayfs's work directory
	LayersDir = host.LCOWLayersDir // layers/<i>: read-only layer i, 0 the top-most
)

// Overlay mount sources name the owner of a union in mountinfo.
const (
	LCOWSourcePrefix = host.LCOWSourcePrefix
	WCOWSourcePrefix = host.WCOWSourcePrefix
)

// MountLCOWLayers mounts the Linux layers and scratch disk of a container under
// guestRoot, a host directory, and returns the path of the container's root file
// system (guestRoot/rootfs), the path of the mounted scratch (guestRoot) and the
// closer that unmounts and detaches it all. See the package documentation for the
// layout, the closer contract and the differences from hcsshim; vm must be nil.
// The stack is planned and mounted by the host engine (host.MountLCOW).
//
// The scratch disk (layers.ScratchVHDPath) is made when it does not exist, with the
// size given by WithScratchSize. On failure nothing stays mounted or attached, and a
// scratch disk made by this call is removed.
func MountLCOWLayers(ctx context.Context, containerID string, layers *LCOWLayers, guestRoot string, vm *UtilityVM, opts ...Option) (_, _ string, _ ResourceCloser, err error) {
	o, err := newOptions(opts)
	if err != nil {
		return "", "", nil, err
	}
	if err := checkVM(vm); err != nil {
		return "", "", nil, err
	}
	if err := validateLCOW(layers, guestRoot); err != nil {
		return "", "", nil, err
	}
	if guestRoot, err = filepath.Abs(guestRoot); err != nil {
		return "", "", nil, err
	}
	o.log.Debug("mounting LCOW layers", "container", containerID, "layers", len(layers.Layers), "root", guestRoot)
	s := host.LCOWStack{ContainerID: containerID, Scratch: layers.ScratchVHDPath, Root: guestRoot}
	for _, l := range layers.Layers {
		s.Layers = append(s.Layers, l.VHDPath)
	}
	undo, err := host.MountLCOW(ctx, s, o.hostOptions()...)
	if err != nil {
		return "", "", nil, err
	}
	return filepath.Join(guestRoot, RootfsDir), guestRoot, undo, nil
}

func validateLCOW(layers *LCOWLayers, guestRoot string) error {
	bad := func(format string, args ...any) error {
		return &Error{Op: "check arguments", Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)}
	}
	switch {
	case layers == nil:
		return bad("no layers")
	case len(layers.Layers) == 0:
		return bad("no read-only layer")
	case layers.ScratchVHDPath == "":
		return bad("no scratch disk path")
	case guestRoot == "":
		return bad("no guest root")
	case len(layers.Layers) > maxLowerLayers:
		return &Error{Op: "check arguments", Err: fmt.Errorf("%w: %d layers, a union holds at most %d", ErrTooManyLayers, len(layers.Layers), maxLowerLayers)}
	}
	for i, l := range layers.Layers {
		switch {
		case l == nil || l.VHDPath == "":
			return bad("layer %d has no path", i)
		case l.Partition != 0:
			return &Error{Op: "check arguments", Path: l.VHDPath, Err: fmt.Errorf("%w: partition %d: only whole-disk layers are supported", ErrUnsupportedDisk, l.Partition)}
		}
	}
	return nil
}

// maxLowerLayers is the kernel's limit of lower layers in one union.
const maxLowerLayers = 500

// UnmountAll unmounts everything mounted at root or below it, such as a stack that
// MountLCOWLayers mounted with root as guestRoot (by this process or by one that has
// exited or crashed), and detaches the disks behind those mounts; see
// host.UnmountAll. A mount still in use is refused with an error matching
// host.ErrBusy unless lazy is set. A root with nothing mounted gives an error
// matching fs.ErrNotExist.
func UnmountAll(ctx context.Context, root string, lazy bool) (*Unmounted, error) {
	return host.UnmountAll(ctx, root, lazy)
}
