package layers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/wcowunion"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// Names in a WCOW scratch folder.
const (
	// SandboxDisk is the scratch disk a scratch folder may hold; when it is
	// there, the union's writable layer is on it.
	SandboxDisk = "sandbox.vhdx"
	// SandboxMountDir is where MountWCOWLayers mounts SandboxDisk.
	SandboxMountDir = "sandbox"
	// WCOWWorkDir is overlayfs's work directory, beside the writable Files/.
	WCOWWorkDir = wcowunion.WorkDir
	// WCOWWhiteoutsDir holds, under the writable layer's base, one directory per
	// read-only layer with tombstones: the layer's deletions as overlay
	// whiteouts. It is made again at every MountWCOWLayers.
	WCOWWhiteoutsDir = wcowunion.WhiteoutsDir
	// WCOWMountDir is the union's mount point when no volumeMountPath is given.
	WCOWMountDir = "mount"
)

// MountWCOWLayers mounts the union of Windows layer folders for a process-isolated
// container and returns its mount path with the closer that unmounts it.
// layerFolders are the read-only layers, top-most first, then the scratch folder
// last: [rolayerN..rolayer1, base, scratch]. The union stacks each read-only
// layer's Files/ folder under the scratch's Files/, which takes the writes; when the
// scratch folder holds sandbox.vhdx (any disk format, holding ext4 or blank) the writable
// Files/ is on that disk, attached and mounted at <scratch>/sandbox. The union is
// mounted at volumeMountPath, or at <scratch>/mount when it is empty. vm must be nil.
//
// The names a layer removes from its parents (its tombstones.txt) become overlay
// whiteouts in a directory stacked right below the layer, made again at each call
// under <writable base>/.overlay-whiteouts, so such a layer takes two of the 500
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
	if len(ro) > mount.MaxLowerLayers {
		return "", nil, &Error{Op: "check arguments", Err: fmt.Errorf("%w: %d layers, a union holds at most %d", ErrTooManyLayers, len(ro), mount.MaxLowerLayers)}
	}
	layers, err := wcowunion.Load(ro)
	if err != nil {
		var le *wcowunion.LayerError
		switch {
		case errors.As(err, &le) && errors.Is(err, wcowunion.ErrNoFiles):
			return "", nil, &Error{Op: "check layer", Path: le.Path, Err: fmt.Errorf("%w: %w", ErrInvalidArgument, le.Err)}
		case errors.As(err, &le):
			return "", nil, &Error{Op: "read tombstones", Path: le.Path, Err: le.Err}
		default:
			return "", nil, &Error{Op: "check arguments", Err: err}
		}
	}
	if st, err := os.Stat(scratch); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return "", nil, &Error{Op: "check scratch", Path: scratch, Err: err}
	}
	target := volumeMountPath
	if target == "" {
		target = filepath.Join(scratch, WCOWMountDir)
	}
	if target, err = filepath.Abs(target); err != nil {
		return "", nil, err
	}
	if err := notMounted(target); err != nil {
		return "", nil, err
	}

	s := newStack(o)
	defer func() {
		if err != nil {
			err = s.unwind(err)
		}
	}()
	upperBase := scratch
	disk := filepath.Join(scratch, SandboxDisk)
	if _, err := os.Stat(disk); err == nil {
		upperBase = filepath.Join(scratch, SandboxMountDir)
		if err := notMounted(upperBase); err != nil {
			return "", nil, err
		}
		if err := s.mkdir("make sandbox mount point", upperBase); err != nil {
			return "", nil, err
		}
		if err := s.attachAndMount(ctx, "scratch", disk, upperBase, false); err != nil {
			return "", nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, &Error{Op: "check scratch", Path: disk, Err: err}
	}
	upper, work := filepath.Join(upperBase, winlayer.FilesDir), filepath.Join(upperBase, WCOWWorkDir)
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", nil, &Error{Op: "make directory", Path: d, Err: err}
		}
	}
	// A layer's deletions hide its parents' files: a directory of whiteouts goes
	// right below the layer.
	whiteouts := filepath.Join(upperBase, WCOWWhiteoutsDir)
	lowers, err := wcowunion.Lowers(layers, whiteouts)
	if err != nil {
		return "", nil, &Error{Op: "make whiteouts", Path: whiteouts, Err: err}
	}
	if err := s.mkdir("make union mount point", target); err != nil {
		return "", nil, err
	}
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	ov := mount.Overlay{Lower: lowers, Upper: upper, Work: work, Source: WCOWSourcePrefix + containerID}
	if err := s.mountOverlay(target, ov); err != nil {
		return "", nil, err
	}
	s.commit()
	return target, s, nil
}

// MountSandboxVolume mounts volumeName at hostPath, making the directory if needed.
// volumeName is a directory, such as the path MountWCOWLayers returns, which is
// bind-mounted, or a block device holding an ext4 or NTFS file system, which is
// mounted read-write (internal/diskfs). Windows volume GUID paths have no meaning here.
func MountSandboxVolume(ctx context.Context, hostPath, volumeName string) (err error) {
	if hostPath == "" || volumeName == "" {
		return &Error{Op: "mount sandbox volume", Err: fmt.Errorf("%w: need a host path and a volume", ErrInvalidArgument)}
	}
	st, err := os.Stat(volumeName)
	if err != nil {
		return &Error{Op: "mount sandbox volume", Path: volumeName, Err: err}
	}
	if err := notMounted(hostPath); err != nil {
		return err
	}
	if err := os.MkdirAll(hostPath, 0o755); err != nil {
		return &Error{Op: "mount sandbox volume", Path: hostPath, Err: err}
	}
	switch {
	case st.IsDir():
		err = mount.Bind(volumeName, hostPath)
	case st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0:
		var fsType host.Filesystem
		if fsType, err = host.ProbeDevice(volumeName); err == nil && fsType == host.None {
			err = fmt.Errorf("%w: %w", ErrUnsupportedDisk, host.ErrUnknownFilesystem)
		}
		if err == nil {
			_, err = host.Apply(ctx, host.Plan{host.FilesystemMount("auto", volumeName, hostPath, false)})
		}
	default:
		err = fmt.Errorf("%w: %s is neither a directory nor a block device", ErrInvalidArgument, volumeName)
	}
	if err != nil {
		return &Error{Op: "mount sandbox volume", Path: volumeName, Err: err}
	}
	return nil
}

// RemoveSandboxMountPoint unmounts what MountSandboxVolume mounted at hostPath and
// removes the directory. A hostPath with nothing mounted is only removed.
func RemoveSandboxMountPoint(ctx context.Context, hostPath string) error {
	if err := mount.Unmount(hostPath); err != nil && !errors.Is(err, mount.ErrNotMounted) {
		return &Error{Op: "unmount sandbox volume", Path: hostPath, Err: err}
	}
	if err := os.Remove(hostPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Op: "remove sandbox mount point", Path: hostPath, Err: err}
	}
	return nil
}
