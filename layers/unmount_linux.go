package layers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// UnmountAll unmounts everything mounted at root or below it, such as a stack that
// MountLCOWLayers mounted with root as guestRoot (by this process or by one that has
// exited or crashed), and detaches the disks behind those mounts. What to undo is read
// from the kernel (mountinfo, the loop devices' sysfs attributes and internal/attach's
// records, which are checked against the kernel), never from memory, so it also cleans
// up after a call that crashed half-way.
//
// A mount still in use is refused with an error matching mount.ErrBusy, leaving the
// mounts below it unmounted and the rest in place, unless lazy is set: then it is
// unmounted lazily (MNT_DETACH), and its device is left for the kernel to detach when
// the last user goes. A raw-view attachment that another stack still has mounted (a
// shared read-only layer) is left to that stack. A root with nothing mounted gives an
// error matching fs.ErrNotExist.
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
			b, _ := readBackingFile(m.Source)
			devs = append(devs, dev{m.Source, b})
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

var errNothingMounted = fmt.Errorf("nothing mounted there: %w", fs.ErrNotExist)

// detachUnmounted ends the attachment of the loop device dev, bound to backing,
// whose mounts under the root are gone: a raw view through internal/attach unless
// another mount still uses it, an autoclear device by waiting for the kernel, any
// other device still bound to backing by detaching it. It reports whether the device
// went.
func detachUnmounted(ctx context.Context, dev, backing string, lazy bool) (bool, error) {
	if a, err := attach.Get(dev); err == nil {
		if mps, err := attach.MountPoints(a); err == nil && len(mps) > 0 {
			return false, nil // shared, or lazily unmounted and still in use
		}
		err := attach.Detach(ctx, a.Device)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, attach.ErrNotAttached):
			return false, nil
		case errors.Is(err, attach.ErrBusy) && lazy:
			return false, nil
		}
		return false, err
	}
	if backing == "" {
		return false, nil // not attached any more
	}
	if err := waitCleared(dev, backing); err == nil {
		return true, nil
	}
	if lazy {
		return false, nil // held by a lazily unmounted file system
	}
	// Not autoclear, or held open by another process: detach it; the kernel
	// finishes when the last opener closes it.
	if err := loop.DetachPath(dev); err != nil {
		return false, err
	}
	return true, nil
}
