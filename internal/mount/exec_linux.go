package mount

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/diskfs"
	"github.com/hostcompute/hostcompute/internal/loop"
)

// run is the state of one Apply.
type run struct {
	e       *Executor
	undo    *Undo
	devices map[string]string // "@name" → /dev/...
	loops   map[string]*loopState
}

type loopState struct {
	dev      *loop.Device
	backing  string
	mounted  bool // a later step mounted it: the mount holds it from then on
	released bool
}

// Apply runs plan step by step and returns its undo. If a step fails, what
// the steps before it did is undone, last first, and the error names the
// step; nothing of the plan is left.
func (e *Executor) Apply(ctx context.Context, plan Plan) (_ *Undo, err error) {
	if err := e.Validate(plan); err != nil {
		return nil, err
	}
	r := &run{e: e, undo: &Undo{}, devices: map[string]string{}, loops: map[string]*loopState{}}
	defer func() {
		if err != nil {
			if rerr := r.undo.Release(context.Background()); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	for _, m := range plan {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if e.Hook != nil {
			if err := e.Hook(m); err != nil {
				return nil, fmt.Errorf("mount: %s: %w", m, err)
			}
		}
		if err := r.step(ctx, m); err != nil {
			return nil, err
		}
	}
	// Hand the loop devices over to their mounts, so that no handle of this
	// process keeps one attached once its mount goes, whoever unmounts it.
	for _, l := range r.loops {
		if l.mounted && l.dev.Release() == nil {
			l.released = true
		}
	}
	return r.undo, nil
}

// source resolves an "@name" reference.
func (r *run) source(m Mount) string {
	if d, ok := r.devices[m.Source]; ok {
		if l := r.loops[m.Source]; l != nil && m.Type != TypeFormat {
			l.mounted = true
		}
		return d
	}
	return m.Source
}

func (r *run) step(ctx context.Context, m Mount) error {
	ro := hasFlag(m.Options, "ro")
	switch m.Type {
	case TypeMkdir:
		made, err := mkdirAll(m.Target)
		if err != nil {
			return &Error{Op: "mkdir", Target: m.Target, Err: err}
		}
		if len(made) > 0 && !hasFlag(m.Options, "keep") {
			r.undo.push(m, func(context.Context) error { return removeMade(made) })
		}
	case TypeLoop:
		return r.loop(m, ro)
	case TypeFormat:
		return format(ctx, r.source(m), m)
	case TypeExt4, TypeNTFS, TypeAuto:
		dev := r.source(m)
		if err := mountFS(ctx, m.Type, dev, m.Target, ro, m.Options); err != nil {
			return err
		}
		r.undo.push(m, func(context.Context) error { return Unmount(m.Target) })
	case TypeOverlay:
		if err := mountOverlay(m.Target, overlayOf(m)); err != nil {
			return err
		}
		r.undo.push(m, func(context.Context) error { return Unmount(m.Target) })
	case TypeBind:
		src := r.source(m)
		var err error
		if ro {
			err = bindReadOnly(src, m.Target, "bind mount")
		} else {
			err = bind(src, m.Target)
		}
		if err != nil {
			return err
		}
		r.undo.push(m, func(context.Context) error { return Unmount(m.Target) })
	default:
		res, err := r.e.Handlers[m.Type](ctx, m)
		if err != nil {
			return err
		}
		if strings.HasPrefix(m.Target, "@") {
			r.devices[m.Target] = res.Device
		}
		if res.Undo != nil {
			r.undo.push(m, res.Undo)
		}
	}
	return nil
}

func (r *run) loop(m Mount, ro bool) error {
	o := loop.Options{ReadOnly: ro, AutoClear: true, DirectIO: hasFlag(m.Options, "direct-io")}
	if v, ok := option(m.Options, "sizelimit"); ok {
		o.SizeLimit, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := option(m.Options, "offset"); ok {
		o.Offset, _ = strconv.ParseInt(v, 10, 64)
	}
	d, err := loop.Attach(m.Source, o)
	if err != nil {
		return err
	}
	l := &loopState{dev: d}
	l.backing, _ = backingFile(d.Path())
	r.devices[m.Target] = d.Path()
	r.loops[m.Target] = l
	r.undo.push(m, func(context.Context) error {
		if l.released {
			// The mount was the last user: the kernel clears the device once
			// it is unmounted.
			return waitCleared(d.Path(), l.backing)
		}
		return d.Detach()
	})
	return nil
}

// backingFile returns the file behind the loop device dev, as sysfs shows it.
func backingFile(dev string) (string, error) {
	b, err := os.ReadFile("/sys/block/" + filepath.Base(dev) + "/loop/backing_file")
	return strings.TrimSuffix(string(b), "\n"), err
}

// clearWait bounds how long waitCleared waits for the kernel.
const clearWait = 5 * time.Second

// waitCleared waits until the autoclear loop device dev is no longer bound to
// backing, after its last user went.
func waitCleared(dev, backing string) error {
	deadline := time.Now().Add(clearWait)
	for {
		b, err := backingFile(dev)
		if err != nil || b != backing {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s still attached to %s %v after its last unmount (another process holds it open)", loop.ErrBusy, dev, backing, clearWait)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// WaitCleared waits until the autoclear loop device dev, bound to backing, is
// cleared by the kernel after its last user went (up to a few seconds).
func WaitCleared(dev, backing string) error { return waitCleared(dev, backing) }

// mkdirAll makes dir and its missing parents and returns those it made,
// deepest first.
func mkdirAll(dir string) ([]string, error) {
	var made []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return made, nil
}

// removeMade removes the directories a mkdir step made, deepest first. One
// that is not empty (files were written into it, another plan made a
// directory in it) is kept, with its parents.
func removeMade(made []string) error {
	for _, d := range made {
		err := os.Remove(d)
		switch {
		case err == nil, errors.Is(err, fs.ErrNotExist):
		case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
			return nil
		default:
			return err
		}
	}
	return nil
}

// ErrNotBlank means a format step with if-blank found data that is not a
// file system of the wanted type: it refuses to erase it.
var ErrNotBlank = errors.New("mount: the disk is not blank")

func format(ctx context.Context, dev string, m Mount) error {
	fsName, _ := option(m.Options, "fs")
	want := diskfs.Filesystem(fsName)
	label, _ := option(m.Options, "label")
	if hasFlag(m.Options, "if-blank") {
		got, err := diskfs.Probe(dev)
		if err != nil {
			return err
		}
		switch {
		case got == want:
			return nil
		case got != diskfs.None:
			return &Error{Op: "format", Target: dev, Err: fmt.Errorf("%w: it holds %s, not %s", ErrNotBlank, got, want)}
		}
		f, err := os.Open(dev)
		if err != nil {
			return err
		}
		buf := make([]byte, 64<<10)
		_, err = io.ReadFull(f, buf)
		f.Close()
		if err != nil {
			return err
		}
		for i, b := range buf {
			if b != 0 {
				return &Error{Op: "format", Target: dev, Err: fmt.Errorf("%w: no %s file system, and byte %d is not zero: refusing to format a disk that is not blank", ErrNotBlank, want, i)}
			}
		}
	}
	return diskfs.Format(ctx, dev, diskfs.FormatOptions{Filesystem: want, Label: label, AssumeZeroed: hasFlag(m.Options, "zeroed")})
}

// mountFS mounts the file system on dev at target.
func mountFS(ctx context.Context, typ, dev, target string, ro bool, opts []string) error {
	if typ == TypeAuto {
		fsys, err := diskfs.Probe(dev)
		if err != nil {
			return &Error{Op: "mount", Target: target, Source: dev, Err: err}
		}
		switch fsys {
		case diskfs.Ext4:
			typ = TypeExt4
		case diskfs.NTFS:
			typ = TypeNTFS
		default:
			return &Error{Op: "mount", Target: target, Source: dev, Err: diskfs.ErrUnknownFilesystem}
		}
	}
	if typ == TypeExt4 {
		return mountExt4(dev, target, ro, opts...)
	}
	var flags uintptr
	if ro {
		flags |= unix.MS_RDONLY
	}
	if kernelHas("ntfs3") {
		if err := unix.Mount(dev, target, "ntfs3", flags, ""); err == nil {
			return nil
		}
	}
	args := []string{dev, target}
	if ro {
		args = append(args, "-o", "ro")
	}
	path, err := exec.LookPath("ntfs-3g")
	if err != nil {
		return &Error{Op: "mount ntfs", Target: target, Source: dev, Err: fmt.Errorf("%w: ntfs-3g not found (Debian package ntfs-3g): %w", diskfs.ErrTool, err)}
	}
	if out, err := exec.CommandContext(ctx, path, args...).CombinedOutput(); err != nil {
		return &Error{Op: "mount ntfs", Target: target, Source: dev, Err: fmt.Errorf("%w: ntfs-3g: %w: %s", diskfs.ErrTool, err, strings.TrimSpace(string(out)))}
	}
	return nil
}

// kernelHas reports whether /proc/filesystems lists fstype.
func kernelHas(fstype string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	return false
}

// LoopDevices returns the loop devices bound to file (see loop.Find).
func LoopDevices(file string) ([]string, error) { return loop.Find(file) }

// DetachLoop detaches the loop device dev; the kernel finishes when its last
// opener closes it.
func DetachLoop(dev string) error { return loop.DetachPath(dev) }
