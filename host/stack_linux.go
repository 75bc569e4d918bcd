package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/wcowunion"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// StackOption changes how a stack is mounted.
type StackOption func(*stackOptions)

type stackOptions struct {
	scratchSize int64
	log         *slog.Logger
	hook        func(Mount) error
}

// DefaultScratchSize is the size of a scratch disk MountLCOW makes when none
// is given: 20 GiB, allocated sparsely.
const DefaultScratchSize = 20 << 30

// WithScratchSize sets the size of a scratch disk that has to be made.
func WithScratchSize(size int64) StackOption { return func(o *stackOptions) { o.scratchSize = size } }

// WithLogger logs the steps to l.
func WithLogger(l *slog.Logger) StackOption {
	return func(o *stackOptions) {
		if l != nil {
			o.log = l
		}
	}
}

// WithStepHook runs h before every step of the stack's plans, and before
// the creation of a missing scratch disk (the pseudo-step of type
// "create-scratch"); an error from h fails that step as if it had failed,
// so that a test can check that a failure anywhere leaves nothing. h may be
// called from several goroutines at once.
func WithStepHook(h func(Mount) error) StackOption { return func(o *stackOptions) { o.hook = h } }

func newStackOptions(opts []StackOption) *stackOptions {
	o := &stackOptions{scratchSize: DefaultScratchSize, log: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(o)
	}
	return o
}

func (o *stackOptions) executor() *mount.Executor {
	e := executor()
	if o.hook != nil {
		outer := e.Hook
		e.Hook = func(m Mount) error {
			if outer != nil {
				if err := outer(m); err != nil {
					return err
				}
			}
			return o.hook(m)
		}
	}
	return e
}

// Names inside the root of an LCOW stack (MountLCOW).
const (
	LCOWRootfsDir = "rootfs" // the union
	LCOWUpperDir  = "upper"  // the union's writable layer
	LCOWWorkDir   = "work"   // overlayfs's work directory
	LCOWLayersDir = "layers" // layers/<i>: read-only layer i, 0 the top-most
)

// Mount sources of the stacks' unions, naming their owner in mountinfo.
const (
	LCOWSourcePrefix = "hcs-lcow:"
	WCOWSourcePrefix = "hcs-wcow:"
)

// LCOWStack is a Linux container's storage: ext4 layer disks and a scratch
// disk, mounted under Root.
type LCOWStack struct {
	ContainerID string
	// Layers are the read-only layer disks (raw ext4 images, VHD or VHDX of
	// any type), top-most first.
	Layers []string
	// Scratch is the scratch disk; it is made (a sparse fixed VHD holding
	// ext4) when it does not exist, and formatted ext4 when it is blank.
	Scratch string
	// Root is where the scratch is mounted; the union is Root/rootfs.
	Root string
}

// layerWorkers bounds how many layers are attached and mounted at once. An ext4
// mount spends most of its time waiting, not computing: on the development machine
// (2 CPUs) 64 read-only mounts took 1.9 s one after another and 0.11 s eight at a
// time, and more at once was slower again.
const layerWorkers = 8

// attachPlan plans the attachment of file as the device name: a loop device
// for raw images and fixed VHDs (the footer kept out), the engine's TypeDisk
// (a raw view, shared between stacks) for the other formats.
func attachPlan(file, name string, readOnly bool) (Plan, error) {
	info, err := inspectDisk(file)
	if errors.Is(err, ErrUnsupportedDisk) {
		return Plan{DiskStep(file, name, readOnly, true)}, nil
	}
	if err != nil {
		return nil, err
	}
	if !readOnly {
		// Two read-write mounts of one ext4 file system corrupt it: refuse a
		// disk that another stack has attached (raw views refuse by
		// themselves).
		if devs, err := mount.LoopDevices(file); err == nil && len(devs) > 0 {
			return nil, &Error{Op: "attach", Path: file, Err: fmt.Errorf("%w: the disk is attached already as %s", ErrAlreadyMounted, strings.Join(devs, ", "))}
		}
	}
	return Plan{mount.LoopStep(file, name, mount.LoopOptions{ReadOnly: readOnly, SizeLimit: info.sizeLimit})}, nil
}

// scratchPlan attaches the scratch disk, formats it if it is blank and
// mounts it writable at target.
func scratchPlan(disk, target string) (Plan, error) {
	p, err := attachPlan(disk, "scratch", false)
	if err != nil {
		return nil, err
	}
	return append(p, FormatStep("@scratch", "ext4", "scratch", true), FilesystemMount(mount.TypeExt4, "@scratch", target, false)), nil
}

// LCOWPlan is the plan of the layers of s, one plan per layer (applied at
// once, see MountLCOW): a mount point, the attachment and a read-only ext4
// mount at Root/layers/<i>.
func LCOWPlan(s LCOWStack) ([]Plan, error) {
	plans := make([]Plan, len(s.Layers))
	for i, l := range s.Layers {
		name := "layer" + strconv.Itoa(i)
		target := filepath.Join(s.Root, LCOWLayersDir, strconv.Itoa(i))
		p, err := attachPlan(l, name, true)
		if err != nil {
			return nil, err
		}
		plans[i] = append(append(Plan{MkdirStep(target)}, p...), FilesystemMount(mount.TypeExt4, "@"+name, target, true))
	}
	return plans, nil
}

// MountLCOW mounts the stack s: the scratch at s.Root, each layer at
// s.Root/layers/<i>, and the union of the layers with s.Root/upper as its
// writable layer at s.Root/rootfs. On failure nothing stays mounted or
// attached, and a scratch disk made by this call is removed.
func MountLCOW(ctx context.Context, s LCOWStack, opts ...StackOption) (_ *Undo, err error) {
	o := newStackOptions(opts)
	if len(s.Layers) == 0 || s.Scratch == "" || s.Root == "" {
		return nil, &Error{Op: "mount LCOW layers", Err: fmt.Errorf("%w: need layers, a scratch disk and a root", ErrInvalidArgument)}
	}
	if len(s.Layers) > mount.MaxLowerLayers {
		return nil, &Error{Op: "mount LCOW layers", Err: fmt.Errorf("%w: %d layers, a union holds at most %d", ErrTooManyLayers, len(s.Layers), mount.MaxLowerLayers)}
	}
	if s.Root, err = filepath.Abs(s.Root); err != nil {
		return nil, err
	}
	if err := NotMounted(s.Root); err != nil {
		return nil, err
	}
	e := o.executor()
	undo := &Undo{}
	var removeScratch bool
	defer func() {
		if err != nil {
			if rerr := undo.Release(context.Background()); rerr != nil {
				o.log.Warn("releasing after a failure", "error", rerr)
				err = errors.Join(err, rerr)
			}
			if removeScratch {
				os.Remove(s.Scratch)
			}
		}
	}()
	if _, serr := os.Stat(s.Scratch); errors.Is(serr, fs.ErrNotExist) {
		if e.Hook != nil {
			if err := e.Hook(Mount{Type: "create-scratch", Source: s.Scratch}); err != nil {
				return nil, err
			}
		}
		if err := createScratch(ctx, s.Scratch, o.scratchSize); err != nil {
			return nil, &Error{Op: "create scratch", Path: s.Scratch, Err: err}
		}
		removeScratch = true
		o.log.Debug("created scratch disk", "path", s.Scratch, "size", o.scratchSize)
	}
	sp, err := scratchPlan(s.Scratch, s.Root)
	if err != nil {
		return nil, err
	}
	first := append(Plan{MkdirStep(s.Root)}, sp...)
	for _, d := range []string{LCOWUpperDir, LCOWWorkDir, LCOWRootfsDir, LCOWLayersDir} {
		first = append(first, mount.KeepDirStep(filepath.Join(s.Root, d)))
	}
	u, err := e.Apply(ctx, first)
	if err != nil {
		return nil, stackError("mount scratch", s.Scratch, err)
	}
	undo.Append(u)
	plans, err := LCOWPlan(s)
	if err != nil {
		return nil, err
	}
	u, err = e.ApplyParallel(ctx, plans, layerWorkers)
	if err != nil {
		var pe *mount.PlanError
		if errors.As(err, &pe) {
			return nil, stackError("mount layer", s.Layers[pe.Plan], err)
		}
		return nil, err
	}
	undo.Append(u)
	lowers := make([]string, len(s.Layers))
	for i := range lowers {
		lowers[i] = filepath.Join(s.Root, LCOWLayersDir, strconv.Itoa(i))
	}
	rootfs := filepath.Join(s.Root, LCOWRootfsDir)
	u, err = e.Apply(ctx, Plan{OverlayMount(rootfs, Overlay{
		Lower:  lowers,
		Upper:  filepath.Join(s.Root, LCOWUpperDir),
		Work:   filepath.Join(s.Root, LCOWWorkDir),
		Source: LCOWSourcePrefix + s.ContainerID,
	})})
	if err != nil {
		return nil, stackError("mount overlay", rootfs, err)
	}
	undo.Append(u)
	return undo, nil
}

// stackError names the disk or directory of a failed step; a scratch that
// is not blank is an unsupported disk.
func stackError(op, path string, err error) error {
	if errors.Is(err, mount.ErrNotBlank) {
		err = fmt.Errorf("%w: %w", ErrUnsupportedDisk, err)
	}
	var he *Error
	if errors.As(err, &he) && he.Path == path {
		return err
	}
	return &Error{Op: op, Path: path, Err: err}
}

// NotMounted refuses a target that has anything mounted on it or below it,
// with an error matching ErrAlreadyMounted.
func NotMounted(target string) error {
	infos, err := mountinfo.Read()
	if err != nil {
		return &Error{Op: "read mount table", Path: target, Err: err}
	}
	if p, err := filepath.EvalSymlinks(target); err == nil {
		target = p
	}
	if m := mountinfo.Under(infos, target); len(m) > 0 {
		return &Error{Op: "check target", Path: target, Err: fmt.Errorf("%w: %d mounts there (unmount them first, e.g. with hcs layer unmount)", ErrAlreadyMounted, len(m))}
	}
	return nil
}

// Names in a WCOW scratch folder.
const (
	// SandboxDisk is the scratch disk a scratch folder may hold; when it is
	// there, the union's writable layer is on it.
	SandboxDisk = "sandbox.vhdx"
	// SandboxMountDir is where MountWCOW mounts SandboxDisk.
	SandboxMountDir = "sandbox"
	// WCOWMountDir is the union's mount point when no target is given.
	WCOWMountDir = "mount"
	// WCOWWorkDir is overlayfs's work directory, beside the writable Files/.
	WCOWWorkDir = wcowunion.WorkDir
	// WCOWWhiteoutsDir holds, under the writable layer's base, one directory
	// per read-only layer with tombstones: its deletions as overlay
	// whiteouts, made again at every MountWCOW.
	WCOWWhiteoutsDir = wcowunion.WhiteoutsDir
)

// WCOWStack is a process-isolated Windows container's storage: read-only
// layer folders (folder or CIM form) and a scratch folder.
type WCOWStack struct {
	ContainerID string
	// Layers are the read-only layers, top-most first.
	Layers []string
	// Scratch is the scratch folder; its sandbox.vhdx, when it has one, is
	// mounted at Scratch/sandbox and holds the writable Files/.
	Scratch string
	// Target is where the union goes; empty means Scratch/mount.
	Target string
}

// cimLayer reports whether the layer folder layer is stored as a CIM
// (cim-layers/<folder name>.cim beside it), and returns the .cim path.
func cimLayer(layer string) (string, bool) {
	p := filepath.Join(filepath.Dir(filepath.Clean(layer)), "cim-layers", filepath.Base(filepath.Clean(layer))+".cim")
	st, err := os.Stat(p)
	return p, err == nil && st.Mode().IsRegular()
}

// cimViewID is the FUSE mount ID of the view of a stack's i-th CIM layer:
// one prefix per container, so that ReleaseCIMs finds them all.
func cimViewID(containerID string, i int) string {
	return cimViewPrefix(containerID) + strconv.Itoa(i)
}

func cimViewPrefix(containerID string) string {
	h := sha256.Sum256([]byte(containerID))
	return "wcow-" + hex.EncodeToString(h[:12]) + "-"
}

// wcowLayers plans the read-only layers of s: folder layers are used as they
// are; a CIM layer is mounted through a FUSE view (a step of the returned
// plan) and its Files/ used. A CIM that forks its parents already shows
// their files (with what it removed absent), so the parents it holds are not
// stacked again.
func wcowLayers(s WCOWStack) ([]wcowunion.Layer, Plan, error) {
	var layers []wcowunion.Layer
	var plan Plan
	for i := 0; i < len(s.Layers); i++ {
		l := s.Layers[i]
		cim, ok := cimLayer(l)
		if !ok {
			ls, err := wcowunion.Load([]string{l})
			if err != nil {
				return nil, nil, err
			}
			layers = append(layers, ls[0])
			continue
		}
		im, err := cimfs.Open(cim)
		if err != nil {
			return nil, nil, &wcowunion.LayerError{Path: l, Err: err}
		}
		parents := im.Parents()
		im.Close()
		id := cimViewID(s.ContainerID, i)
		view := filepath.Join(CIMMountDir(), id)
		plan = append(plan, MkdirStep(view), CIMStep(cim, view, id, s.ContainerID))
		layers = append(layers, wcowunion.Layer{Path: l, Files: filepath.Join(view, winlayer.FilesDir)})
		for k := 0; k < parents && i+1 < len(s.Layers); k++ {
			if _, ok := cimLayer(s.Layers[i+1]); !ok {
				return nil, nil, &wcowunion.LayerError{Path: l, Err: fmt.Errorf("%w: the CIM forks %d parent images, but the layer below it, %s, is not a CIM layer", ErrInvalidArgument, parents, s.Layers[i+1])}
			}
			i++
		}
	}
	n := 0
	for _, l := range layers {
		n++
		if len(l.Tombstones) > 0 {
			n++
		}
	}
	if n > mount.MaxLowerLayers {
		return nil, nil, fmt.Errorf("%w: %d layers need %d lower directories (one more per layer with deletions), a union holds at most %d", ErrTooManyLayers, len(s.Layers), n, mount.MaxLowerLayers)
	}
	return layers, plan, nil
}

// MountWCOW mounts the union of the stack s and returns its path: the
// read-only layers' Files/ (CIM layers through their FUSE views), each
// layer's deletions as a directory of whiteouts below it, under the
// writable Files/ of the scratch folder or of its sandbox.vhdx. On failure
// nothing stays mounted, attached or served.
func MountWCOW(ctx context.Context, s WCOWStack, opts ...StackOption) (_ string, _ *Undo, err error) {
	o := newStackOptions(opts)
	if len(s.Layers) == 0 || s.Scratch == "" {
		return "", nil, &Error{Op: "mount WCOW layers", Err: fmt.Errorf("%w: need at least one read-only layer and the scratch", ErrInvalidArgument)}
	}
	layers, cimPlan, err := wcowLayers(s)
	if err != nil {
		var le *wcowunion.LayerError
		switch {
		case errors.As(err, &le) && errors.Is(err, wcowunion.ErrNoFiles):
			return "", nil, &Error{Op: "check layer", Path: le.Path, Err: fmt.Errorf("%w: %w", ErrInvalidArgument, le.Err)}
		case errors.As(err, &le):
			return "", nil, &Error{Op: "read layer", Path: le.Path, Err: le.Err}
		default:
			return "", nil, &Error{Op: "check arguments", Err: err}
		}
	}
	if st, err := os.Stat(s.Scratch); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return "", nil, &Error{Op: "check scratch", Path: s.Scratch, Err: err}
	}
	target := s.Target
	if target == "" {
		target = filepath.Join(s.Scratch, WCOWMountDir)
	}
	if target, err = filepath.Abs(target); err != nil {
		return "", nil, err
	}
	if err := NotMounted(target); err != nil {
		return "", nil, err
	}
	e := o.executor()
	undo := &Undo{}
	defer func() {
		if err != nil {
			if rerr := undo.Release(context.Background()); rerr != nil {
				o.log.Warn("releasing after a failure", "error", rerr)
				err = errors.Join(err, rerr)
			}
		}
	}()
	upperBase := s.Scratch
	first := cimPlan
	disk := filepath.Join(s.Scratch, SandboxDisk)
	if _, err := os.Stat(disk); err == nil {
		upperBase = filepath.Join(s.Scratch, SandboxMountDir)
		if err := NotMounted(upperBase); err != nil {
			return "", nil, err
		}
		sp, err := scratchPlan(disk, upperBase)
		if err != nil {
			return "", nil, err
		}
		first = append(append(first, MkdirStep(upperBase)), sp...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, &Error{Op: "check scratch", Path: disk, Err: err}
	}
	upper, work := filepath.Join(upperBase, winlayer.FilesDir), filepath.Join(upperBase, wcowunion.WorkDir)
	first = append(first, mount.KeepDirStep(upper), mount.KeepDirStep(work))
	u, err := e.Apply(ctx, first)
	if err != nil {
		return "", nil, stackError("mount scratch", disk, err)
	}
	undo.Append(u)
	// A layer's deletions hide its parents' files: a directory of whiteouts
	// goes right below the layer, made on the writable layer's file system.
	whiteouts := filepath.Join(upperBase, wcowunion.WhiteoutsDir)
	lowers, err := wcowunion.Lowers(layers, whiteouts)
	if err != nil {
		return "", nil, &Error{Op: "make whiteouts", Path: whiteouts, Err: err}
	}
	u, err = e.Apply(ctx, Plan{
		MkdirStep(target),
		OverlayMount(target, Overlay{Lower: lowers, Upper: upper, Work: work, Source: WCOWSourcePrefix + s.ContainerID}),
	})
	if err != nil {
		return "", nil, stackError("mount overlay", target, err)
	}
	undo.Append(u)
	return target, undo, nil
}

// ReleaseCIMs ends the FUSE views of CIM layers that MountWCOW mounted for
// containerID, live or left by a crash: a live view is unmounted (lazily if
// it is busy: the container is going away), a dead one detached, and their
// mount points removed.
func ReleaseCIMs(ctx context.Context, containerID string) error {
	recs, err := fusefs.List()
	if err != nil {
		return err
	}
	prefix := cimViewPrefix(containerID)
	var errs []error
	for _, r := range recs {
		if !strings.HasPrefix(r.ID, prefix) {
			continue
		}
		err := fusefs.Unmount(ctx, r.ID)
		if errors.Is(err, fusefs.ErrBusy) {
			err = mount.UnmountDetach(r.Mountpoint)
		}
		if err != nil && !errors.Is(err, fusefs.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(r.Mountpoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if _, err := fusefs.Cleanup(ctx); err != nil {
		errs = append(errs, err)
	}
	// Mount points of views whose helper died before Cleanup saw them.
	if ents, err := os.ReadDir(CIMMountDir()); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				os.Remove(filepath.Join(CIMMountDir(), e.Name()))
			}
		}
	}
	return errors.Join(errs...)
}

// Unmounted is what UnmountAll undid.
type Unmounted struct {
	// MountPoints were unmounted, in this order.
	MountPoints []string `json:"unmounted"`
	// Devices are the loop devices detached (or cleared by the kernel) after
	// their mounts went.
	Devices []string `json:"detached"`
}

// errNothingMounted is UnmountAll's answer for a root with nothing mounted.
var errNothingMounted = fmt.Errorf("nothing mounted there: %w", fs.ErrNotExist)

// UnmountAll unmounts everything mounted at root or below it, such as a stack
// MountLCOW or MountWCOW mounted (by this process or one that has exited or
// crashed), and detaches the disks behind those mounts. What to undo is read
// from the kernel (mountinfo, the loop devices' sysfs attributes and the
// attachment records, which are checked against the kernel), never from
// memory. A mount still in use gives an error matching ErrBusy, leaving the
// mounts below it unmounted and the rest in place, unless lazy is set: then
// it is unmounted lazily and its device left for the kernel to detach when
// the last user goes. An attachment another stack still has mounted (a
// shared read-only layer) is left to that stack. A root with nothing mounted
// gives an error matching fs.ErrNotExist.
func UnmountAll(ctx context.Context, root string, lazy bool) (*Unmounted, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	infos, err := mountinfo.Read()
	if err != nil {
		return nil, &Error{Op: "read mount table", Path: abs, Err: err}
	}
	under := mountinfo.Under(infos, abs)
	if len(under) == 0 {
		return nil, &Error{Op: "unmount", Path: abs, Err: errNothingMounted}
	}
	// The devices behind the mounts, with their backing files, before they go.
	type dev struct{ path, backing string }
	var devs []dev
	seen := map[string]bool{}
	for _, m := range under {
		if strings.HasPrefix(m.Source, "/dev/loop") && !seen[m.Source] {
			seen[m.Source] = true
			b, _ := os.ReadFile("/sys/block/" + filepath.Base(m.Source) + "/loop/backing_file")
			devs = append(devs, dev{m.Source, strings.TrimSuffix(string(b), "\n")})
		}
	}
	done, err := mount.UnmountAll(abs, lazy)
	res := &Unmounted{MountPoints: []string{}, Devices: []string{}}
	for _, m := range done {
		res.MountPoints = append(res.MountPoints, m.Mountpoint)
	}
	if err != nil {
		return res, &Error{Op: "unmount", Path: abs, Err: err}
	}
	for i := len(devs) - 1; i >= 0; i-- {
		d := devs[i]
		ok, err := detachUnmounted(ctx, d.path, d.backing, lazy)
		if err != nil {
			return res, &Error{Op: "detach", Path: d.backing, Err: err}
		}
		if ok {
			res.Devices = append(res.Devices, d.path)
		}
	}
	return res, nil
}

// detachUnmounted ends the attachment of the loop device dev, bound to
// backing, whose mounts under the root are gone: a recorded attachment
// unless another mount still uses it, an autoclear device by waiting for
// the kernel, any other device still bound to backing by detaching it. It
// reports whether the device went.
func detachUnmounted(ctx context.Context, dev, backing string, lazy bool) (bool, error) {
	if a, err := GetDisk(dev); err == nil {
		if mps, err := DiskMountPoints(a); err == nil && len(mps) > 0 {
			return false, nil // shared, or lazily unmounted and still in use
		}
		err := DetachDisk(ctx, a.Device)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ErrDiskNotAttached):
			return false, nil
		case errors.Is(err, ErrDiskBusy) && lazy:
			return false, nil
		}
		return false, err
	}
	if backing == "" {
		return false, nil // not attached any more
	}
	if err := mount.WaitCleared(dev, backing); err == nil {
		return true, nil
	}
	if lazy {
		return false, nil // held by a lazily unmounted file system
	}
	// Not autoclear, or held open by another process: detach it; the kernel
	// finishes when the last opener closes it.
	if err := mount.DetachLoop(dev); err != nil {
		return false, err
	}
	return true, nil
}

// MountVolume mounts volume at hostPath, making the directory if needed:
// a directory is bind-mounted, a block device holding ext4 or NTFS mounted
// read-write.
func MountVolume(ctx context.Context, hostPath, volume string) error {
	st, err := os.Stat(volume)
	if err != nil {
		return &Error{Op: "mount volume", Path: volume, Err: err}
	}
	if err := NotMounted(hostPath); err != nil {
		return err
	}
	var step Mount
	switch {
	case st.IsDir():
		step = BindMount(volume, hostPath, false)
	case st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0:
		fsType, err := ProbeDevice(volume)
		if err == nil && fsType == None {
			err = fmt.Errorf("%w: %w", ErrUnsupportedDisk, ErrUnknownFilesystem)
		}
		if err != nil {
			return &Error{Op: "mount volume", Path: volume, Err: err}
		}
		step = FilesystemMount(mount.TypeAuto, volume, hostPath, false)
	default:
		return &Error{Op: "mount volume", Path: volume, Err: fmt.Errorf("%w: neither a directory nor a block device", ErrInvalidArgument)}
	}
	hostPath, err = filepath.Abs(hostPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(hostPath, 0o755); err != nil {
		return &Error{Op: "mount volume", Path: hostPath, Err: err}
	}
	step.Target = hostPath
	if _, err := Apply(ctx, Plan{step}); err != nil {
		return &Error{Op: "mount volume", Path: volume, Err: err}
	}
	return nil
}

// MountDiskAt attaches the disk file disk (a loop device for raw images and
// fixed VHDs, a shared raw view for other formats) and mounts its ext4 file
// system at target, an existing directory. Release of the undo unmounts and
// detaches it.
func MountDiskAt(ctx context.Context, disk, target string, readOnly bool, opts ...StackOption) (*Undo, error) {
	p, err := attachPlan(disk, "disk", readOnly)
	if err != nil {
		return nil, err
	}
	u, err := newStackOptions(opts).executor().Apply(ctx, append(p, FilesystemMount(mount.TypeExt4, "@disk", target, readOnly)))
	if err != nil {
		return nil, stackError("mount disk", disk, err)
	}
	return u, nil
}
