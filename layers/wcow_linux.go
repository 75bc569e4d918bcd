package layers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/hostcompute/hostcompute/host"
)

// Names in a WCOW scratch folder.
const (
	// SandboxDisk is the scratch disk a scratch folder may hold; when it is
	// there, the union's writable layer is on it.
	SandboxDisk = host.SandboxDisk
	// SandboxMountDir is where MountWCOWLayers mounts SandboxDisk.
	SandboxMountDir = host.SandboxMountDir
	// WCOWWorkDir is overlayfs's work directory, beside the writable Files/.
	WCOWWorkDir = host.WCOWWorkDir
	// WCOWWhiteoutsDir holds, under the writable layer's base, one directory per
	// read-only layer with tombstones: the layer's deletions as overlay
	// whiteouts. It is made again at every MountWCOWLayers.
	WCOWWhiteoutsDir = host.WCOWWhiteoutsDir
	// WCOWMountDir is the union's mount point when no volumeMountPath is given.
	WCOWMountDir = host.WCOWMountDir
)

// MountWCOWLayers mounts the union of Windows layers for a process-isolated
// container and returns its mount path with the closer that unmounts it.
// layerFolders are the read-only layers, top-most first, then the scratch folder
// last: [rolayerN..rolayer1, base, scratch]. A read-only layer is a layer folder
// (its Files/ is used) or a CIM layer (cim-layers/<id>.cim beside the folder,
// mounted read-only through a FUSE view whose Files/ is used; a CIM that forks
// its parents holds their files already, so the parent layers it forks are not
// stacked again). The union stacks each read-only layer's Files/ under the
// scratch's Files/, which takes the writes; when the scratch folder holds
// sandbox.vhdx (any disk format, holding ext4 or blank) the writable Files/ is on
// that disk, attached and mounted at <scratch>/sandbox. The union is mounted at
// volumeMountPath, or at <scratch>/mount when it is empty. vm must be nil. The
// stack is planned and mounted by the host engine (host.MountWCOW); the closer
// also ends the CIM views.
//
// The names a folder layer removes from its parents (its tombstones.txt) become
// overlay whiteouts in a directory stacked right below the layer, made again at each
// call under <writable base>/.overlay-whiteouts, so such a layer takes two of the 500
// lower directories a union can have.
func MountWCOWLayers(ctx context.Context, containerID string, layerFolders []string, volumeMountPath string, vm *UtilityVM, opts ...Option) (_ string, _ ResourceCloser, err error) {
	o, err := newOptions(opts)
	if err != nil {
		return "", nil, err
	}
	if err := checkVM(vm); err != nil {
		return "", nil, err
	}
	if len(layerFolders) < 2 {
		return "", nil, &Error{Op: "check arguments", Err: fmt.Errorf("%w: need at least two layer folders, a base layer and the scratch", ErrInvalidArgument)}
	}
	ro, scratch := layerFolders[:len(layerFolders)-1], layerFolders[len(layerFolders)-1]
	if len(ro) > maxLowerLayers {
		return "", nil, &Error{Op: "check arguments", Err: fmt.Errorf("%w: %d layers, a union holds at most %d", ErrTooManyLayers, len(ro), maxLowerLayers)}
	}
	target, undo, err := host.MountWCOW(ctx, host.WCOWStack{ContainerID: containerID, Layers: ro, Scratch: scratch, Target: volumeMountPath}, o.hostOptions()...)
	if err != nil {
		return "", nil, err
	}
	return target, undo, nil
}

// MountSandboxVolume mounts volumeName at hostPath, making the directory if needed.
// volumeName is a directory, such as the path MountWCOWLayers returns, which is
// bind-mounted, or a block device holding an ext4 or NTFS file system, which is
// mounted read-write. Windows volume GUID paths have no meaning here.
func MountSandboxVolume(ctx context.Context, hostPath, volumeName string) (err error) {
	if hostPath == "" || volumeName == "" {
		return &Error{Op: "mount sandbox volume", Err: fmt.Errorf("%w: need a host path and a volume", ErrInvalidArgument)}
	}
	return host.MountVolume(ctx, hostPath, volumeName)
}

// RemoveSandboxMountPoint unmounts what MountSandboxVolume mounted at hostPath and
// removes the directory. A hostPath with nothing mounted is only removed.
func RemoveSandboxMountPoint(ctx context.Context, hostPath string) error {
	if err := host.Unmount(hostPath); err != nil && !errors.Is(err, host.ErrNotMounted) {
		return &Error{Op: "unmount sandbox volume", Path: hostPath, Err: err}
	}
	if err := os.Remove(hostPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Op: "remove sandbox mount point", Path: hostPath, Err: err}
	}
	return nil
}
