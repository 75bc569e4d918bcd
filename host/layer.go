package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/wcowunion"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// Activate attaches the scratch disk of the writable layer folder layer and
// mounts its file system at the layer's volume path, or, when the layer is
// active already, only counts one more activation (repairing the mount if it
// went away).
func Activate(ctx context.Context, layer, disk string) error {
	abs, err := canonical(layer)
	if err != nil {
		return &Error{Op: "activate", Path: layer, Err: err}
	}
	e, err := openReconciled(ctx, abs, kindLayer)
	if err != nil {
		return &Error{Op: "activate", Path: abs, Err: err}
	}
	defer e.close()
	if err := e.activate(ctx, disk); err != nil {
		return &Error{Op: "activate", Path: abs, Err: err}
	}
	return nil
}

func (e *entry) activate(ctx context.Context, disk string) error {
	disk, err := canonical(disk)
	if err != nil {
		return err
	}
	if e.rec.Disk != "" && e.rec.Disk != disk {
		return fmt.Errorf("%w: active with disk %s, not %s", ErrInvalidArgument, e.rec.Disk, disk)
	}
	volume := filepath.Join(e.dir, VolumeDir)
	mounted, err := isMountpoint(volume)
	if err != nil {
		return err
	}
	if e.rec.Activations > 0 && mounted {
		e.rec.Activations++
		return e.save()
	}
	e.rec.Disk = disk
	if e.rec.Activations == 0 {
		// Mark the attempt so that a crash before the count is saved is undone
		// by the next call (see reconcile).
		e.rec.Pending = true
		if err := e.save(); err != nil {
			return err
		}
	}
	if err := mountVolume(ctx, e.rec.Disk, volume); err != nil {
		if e.rec.Activations == 0 {
			e.teardownVolume(ctx)
			e.rec.Pending, e.rec.Disk = false, ""
			e.save()
		}
		return err
	}
	e.rec.Pending = false
	e.rec.Activations++
	return e.save()
}

// mountVolume attaches disk (unless it is attached already) and mounts its
// ext4 or NTFS file system at volume: a plan of the one executor. The
// attachment and the mount outlive the call; the record says they exist.
func mountVolume(ctx context.Context, disk, volume string) error {
	dev := "@scratch"
	var plan Plan
	a, err := attach.Get(disk)
	switch {
	case err == nil:
		dev = a.Device
	case errors.Is(err, attach.ErrNotAttached):
		plan = append(plan, DiskStep(disk, "scratch", false, false))
	default:
		return err
	}
	plan = append(plan, MkdirStep(volume), FilesystemMount(mount.TypeAuto, dev, volume, false))
	if _, err := Apply(ctx, plan); err != nil {
		if errors.Is(err, diskfs.ErrUnknownFilesystem) {
			return fmt.Errorf("scratch disk %s: %w", disk, err)
		}
		return err
	}
	return nil
}

// teardownVolume unmounts the volume path and detaches the recorded disk,
// whatever of the two is there.
func (e *entry) teardownVolume(ctx context.Context) error {
	volume := filepath.Join(e.dir, VolumeDir)
	for {
		m, err := isMountpoint(volume)
		if err != nil {
			return err
		}
		if !m {
			break
		}
		if err := mount.Unmount(volume); err != nil {
			return err
		}
	}
	if e.rec.Disk == "" {
		return nil
	}
	if err := attach.Detach(ctx, e.rec.Disk); err != nil && !errors.Is(err, attach.ErrNotAttached) {
		return err
	}
	return nil
}

// Deactivate counts one activation of layer less; the last one unmounts its
// volume and detaches its disk. A layer still prepared is refused with
// ErrStillPrepared; one not active gives ErrNotActivated.
func Deactivate(ctx context.Context, layer string) error {
	abs, err := canonical(layer)
	if err != nil {
		return &Error{Op: "deactivate", Path: layer, Err: err}
	}
	e, err := openReconciled(ctx, abs, kindLayer)
	if err != nil {
		return &Error{Op: "deactivate", Path: abs, Err: err}
	}
	defer e.close()
	switch {
	case e.rec.Activations == 0:
		return &Error{Op: "deactivate", Path: abs, Err: ErrNotActivated}
	case e.rec.Activations == 1 && e.rec.Prepares > 0:
		return &Error{Op: "deactivate", Path: abs, Err: fmt.Errorf("%w (%d times): unprepare it first", ErrStillPrepared, e.rec.Prepares)}
	case e.rec.Activations > 1:
		e.rec.Activations--
		if err := e.save(); err != nil {
			return &Error{Op: "deactivate", Path: abs, Err: err}
		}
		return nil
	}
	// The unmount is tried first, so that a busy volume changes nothing; the
	// record is saved before the disk is detached, and a crash in between
	// leaves an attachment that the next call's reconcile removes.
	volume := filepath.Join(e.dir, VolumeDir)
	if err := unmountAll(volume); err != nil {
		return &Error{Op: "deactivate", Path: abs, Err: err}
	}
	e.rec.Activations, e.rec.Pending = 0, true
	if err := e.save(); err != nil {
		return &Error{Op: "deactivate", Path: abs, Err: err}
	}
	if err := e.teardownVolume(ctx); err != nil {
		return &Error{Op: "deactivate", Path: abs, Err: err}
	}
	e.rec.Pending, e.rec.Disk = false, ""
	return nil
}

// Prepare mounts the union of parents (read-only layer folders, immediate
// parent first) with the active layer's volume as the writable layer, at the
// layer's union path; when prepared already with the same parents it counts
// one more preparation (remounting the union if it went away).
func Prepare(ctx context.Context, layer string, parents []string) error {
	abs, err := canonical(layer)
	if err != nil {
		return &Error{Op: "prepare", Path: layer, Err: err}
	}
	e, err := openReconciled(ctx, abs, kindLayer)
	if err != nil {
		return &Error{Op: "prepare", Path: abs, Err: err}
	}
	defer e.close()
	if e.rec.Activations == 0 {
		return &Error{Op: "prepare", Path: abs, Err: ErrNotActivated}
	}
	parents, err = absAll(parents)
	if err != nil {
		return &Error{Op: "prepare", Path: abs, Err: err}
	}
	if e.rec.Prepares > 0 && !slices.Equal(parents, e.rec.Parents) {
		return &Error{Op: "prepare", Path: abs, Err: fmt.Errorf("%w: prepared over %q", ErrParentsDiffer, e.rec.Parents)}
	}
	union := filepath.Join(e.dir, UnionDir)
	if m, err := isMountpoint(union); err != nil {
		return &Error{Op: "prepare", Path: abs, Err: err}
	} else if !m {
		if err := mountUnion(filepath.Join(e.dir, VolumeDir), union, parents, UnionSourcePrefix+abs); err != nil {
			return &Error{Op: "prepare", Path: abs, Err: err}
		}
	}
	e.rec.Prepares++
	e.rec.Parents = parents
	if err := e.save(); err != nil {
		if e.rec.Prepares == 1 {
			mount.Unmount(union)
		}
		return &Error{Op: "prepare", Path: abs, Err: err}
	}
	return nil
}

// mountUnion mounts at target the union of the parents' Files/ (with their
// deletions as whiteouts) under base/Files, the writable layer, as package
// layers' MountWCOWLayers lays out a scratch.
func mountUnion(base, target string, parents []string, source string) error {
	if len(parents) == 0 {
		return fmt.Errorf("%w: no parent layers", ErrInvalidArgument)
	}
	layers, err := wcowunion.Load(parents)
	if err != nil {
		return err
	}
	upper, work := filepath.Join(base, winlayer.FilesDir), filepath.Join(base, wcowunion.WorkDir)
	for _, d := range []string{upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lowers, err := wcowunion.Lowers(layers, filepath.Join(base, wcowunion.WhiteoutsDir))
	if err != nil {
		return err
	}
	_, err = Apply(context.Background(), Plan{OverlayMount(target, Overlay{Lower: lowers, Upper: upper, Work: work, Source: source})})
	return err
}

// Unprepare counts one preparation of layer less; the last one unmounts the
// union. A busy union gives an error matching mount.ErrBusy and stays.
func Unprepare(ctx context.Context, layer string) error {
	abs, err := canonical(layer)
	if err != nil {
		return &Error{Op: "unprepare", Path: layer, Err: err}
	}
	e, err := openReconciled(ctx, abs, kindLayer)
	if err != nil {
		return &Error{Op: "unprepare", Path: abs, Err: err}
	}
	defer e.close()
	if e.rec.Prepares == 0 {
		return &Error{Op: "unprepare", Path: abs, Err: ErrNotPrepared}
	}
	if e.rec.Prepares == 1 {
		if err := unmountAll(filepath.Join(e.dir, UnionDir)); err != nil {
			return &Error{Op: "unprepare", Path: abs, Err: err}
		}
		e.rec.Parents = nil
	}
	e.rec.Prepares--
	if err := e.save(); err != nil {
		return &Error{Op: "unprepare", Path: abs, Err: err}
	}
	return nil
}

// MountPath returns where layer can be used: its union path when prepared,
// its volume path when only active, and "" when neither.
func MountPath(ctx context.Context, layer string) (string, error) {
	abs, err := canonical(layer)
	if err != nil {
		return "", &Error{Op: "get mount path", Path: layer, Err: err}
	}
	// No state directory: nothing held and nothing mounted at its paths. This
	// keeps the question open to callers that cannot write the state.
	if _, err := os.Stat(key(abs)); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	e, err := openReconciled(ctx, abs, kindLayer)
	if err != nil {
		return "", &Error{Op: "get mount path", Path: abs, Err: err}
	}
	defer e.close()
	switch {
	case e.rec.Prepares > 0:
		return filepath.Join(e.dir, UnionDir), nil
	case e.rec.Activations > 0:
		return filepath.Join(e.dir, VolumeDir), nil
	}
	return "", nil
}

// LayerState reports the counts of layer: how many activations and preparations
// are outstanding.
func LayerState(ctx context.Context, layer string) (activations, prepares int, err error) {
	abs, err := canonical(layer)
	if err != nil {
		return 0, 0, err
	}
	e, err := openReconciled(ctx, abs, kindLayer)
	if err != nil {
		return 0, 0, &Error{Op: "state", Path: abs, Err: err}
	}
	defer e.close()
	return e.rec.Activations, e.rec.Prepares, nil
}

// AttachOverlay puts the union of parents over the volume mounted at volume:
// the volume's Files/ is the writable layer and the union is mounted on top
// of volume itself, so volume shows the union from then on, as a volume with
// a Windows filter attached does. Further calls with the same parents count.
func AttachOverlay(ctx context.Context, volume string, parents []string) error {
	abs, err := canonical(volume)
	if err != nil {
		return &Error{Op: "attach overlay", Path: volume, Err: err}
	}
	if st, err := os.Stat(abs); err != nil {
		return &Error{Op: "attach overlay", Path: abs, Err: err}
	} else if !st.IsDir() {
		return &Error{Op: "attach overlay", Path: abs, Err: fmt.Errorf("%w: not a directory", ErrInvalidArgument)}
	}
	e, err := openReconciled(ctx, abs, kindOverlay)
	if err != nil {
		return &Error{Op: "attach overlay", Path: abs, Err: err}
	}
	defer e.close()
	if parents, err = absAll(parents); err != nil {
		return &Error{Op: "attach overlay", Path: abs, Err: err}
	}
	if e.rec.Prepares > 0 && !slices.Equal(parents, e.rec.Parents) {
		return &Error{Op: "attach overlay", Path: abs, Err: fmt.Errorf("%w: attached over %q", ErrParentsDiffer, e.rec.Parents)}
	}
	on, err := overlayOnTop(abs)
	if err != nil {
		return &Error{Op: "attach overlay", Path: abs, Err: err}
	}
	if !on {
		if err := mountUnion(abs, abs, parents, OverlaySourcePrefix+abs); err != nil {
			return &Error{Op: "attach overlay", Path: abs, Err: err}
		}
	}
	e.rec.Prepares++
	e.rec.Parents = parents
	if err := e.save(); err != nil {
		if e.rec.Prepares == 1 {
			mount.Unmount(abs)
		}
		return &Error{Op: "attach overlay", Path: abs, Err: err}
	}
	return nil
}

// DetachOverlay counts one AttachOverlay of volume less; the last one
// unmounts the union from over the volume.
func DetachOverlay(ctx context.Context, volume string) error {
	abs, err := canonical(volume)
	if err != nil {
		return &Error{Op: "detach overlay", Path: volume, Err: err}
	}
	e, err := openReconciled(ctx, abs, kindOverlay)
	if err != nil {
		return &Error{Op: "detach overlay", Path: abs, Err: err}
	}
	defer e.close()
	if e.rec.Prepares == 0 {
		return &Error{Op: "detach overlay", Path: abs, Err: ErrNotPrepared}
	}
	if e.rec.Prepares == 1 {
		if on, err := overlayOnTop(abs); err != nil {
			return &Error{Op: "detach overlay", Path: abs, Err: err}
		} else if on {
			if err := mount.Unmount(abs); err != nil {
				return &Error{Op: "detach overlay", Path: abs, Err: err}
			}
		}
		e.rec.Parents = nil
	}
	e.rec.Prepares--
	if err := e.save(); err != nil {
		return &Error{Op: "detach overlay", Path: abs, Err: err}
	}
	return nil
}

// openReconciled opens the entry of abs and makes the mounts agree with its
// record: what a crashed caller mounted or attached beyond the counts is
// undone. Missing mounts of counted activations are made again by the next
// Activate or Prepare.
func openReconciled(ctx context.Context, abs, kind string) (*entry, error) {
	e, err := open(abs, kind)
	if err != nil {
		return nil, err
	}
	if err := e.reconcile(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *entry) reconcile(ctx context.Context) error {
	if e.rec.Kind == kindOverlay {
		if e.rec.Prepares > 0 {
			return nil
		}
		on, err := overlayOnTop(e.rec.Path)
		if err != nil || !on {
			return err
		}
		return mount.Unmount(e.rec.Path)
	}
	if e.rec.Prepares == 0 {
		if err := unmountAll(filepath.Join(e.dir, UnionDir)); err != nil {
			return err
		}
	}
	if e.rec.Activations == 0 && (e.rec.Pending || e.rec.Disk != "") {
		if err := e.teardownVolume(ctx); err != nil {
			return err
		}
		e.rec.Pending, e.rec.Disk = false, ""
		return e.save()
	}
	if e.rec.Activations == 0 {
		return unmountAll(filepath.Join(e.dir, VolumeDir))
	}
	return nil
}

// isMountpoint reports whether something is mounted at dir.
func isMountpoint(dir string) (bool, error) {
	ms, err := mountinfo.Lookup(dir)
	if err != nil {
		return false, err
	}
	return len(ms) > 0, nil
}

// unmountAll unmounts everything stacked at dir (nothing there is fine).
func unmountAll(dir string) error {
	for {
		m, err := isMountpoint(dir)
		if err != nil || !m {
			return err
		}
		if err := mount.Unmount(dir); err != nil {
			return err
		}
	}
}

// overlayOnTop reports whether the topmost mount at volume is our overlay.
func overlayOnTop(volume string) (bool, error) {
	ms, err := mountinfo.Lookup(volume)
	if err != nil || len(ms) == 0 {
		return false, err
	}
	top := ms[len(ms)-1]
	return top.FSType == "overlay" && top.Source == OverlaySourcePrefix+volume, nil
}

func absAll(paths []string) ([]string, error) {
	out := make([]string, len(paths))
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// canonical returns the absolute path of p with symbolic links resolved when
// it exists, so that one folder reached by two paths has one state entry.
func canonical(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}
