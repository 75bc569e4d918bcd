package attach

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/fusefs"
	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/state"
)

const (
	recordFile = "record.json"
	lockFile   = "lock"
	// globalLock serialises Attach's check for an existing attachment of the
	// same disk with the creation of the new record.
	globalLock = ".lock"
)

// Attach makes the disk at path a block device and returns its attachment.
// It first runs Cleanup, so that what an earlier crashed caller left is
// gone. On failure nothing stays attached, mounted or recorded.
func Attach(ctx context.Context, path string, opts Options) (*Attachment, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{Op: "attach", Path: path, Err: err}
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	var info *Info
	if opts.Raw {
		info, err = detectRaw(abs)
	} else {
		info, err = Detect(abs)
	}
	if err != nil {
		return nil, &Error{Op: "attach", Path: abs, Err: err}
	}
	// What an earlier crash left is cleaned first; a failure there (say, a
	// broken attachment still mounted) does not concern this disk.
	_ = Cleanup(ctx)
	a := &Attachment{
		Version:  recordVersion,
		ID:       newID(),
		Disk:     abs,
		Format:   info.Format,
		Size:     info.Size,
		ReadOnly: opts.ReadOnly,
		RawView:  !info.Format.RawBacked(),
		Created:  time.Now().UTC(),
	}
	dir, lock, err := createRecord(a)
	if err != nil {
		return nil, &Error{Op: "attach", Path: abs, Err: err}
	}
	defer lock.Close()
	if err := attach(ctx, dir, a); err != nil {
		undo(ctx, dir, a)
		return nil, &Error{Op: "attach", Path: abs, Device: a.Device, Err: err}
	}
	return a, nil
}

func newID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// createRecord checks that a.Disk is not attached, and creates a's state
// directory, locked, with its first record.
func createRecord(a *Attachment) (string, *state.Lock, error) {
	g, err := state.LockFile(filepath.Join(StateDir(), globalLock))
	if err != nil {
		return "", nil, err
	}
	defer g.Close()
	all, err := records()
	if err != nil {
		return "", nil, err
	}
	for _, o := range all {
		if o.Disk == a.Disk {
			return "", nil, fmt.Errorf("%w as %s", ErrAttached, o.Device)
		}
	}
	dir := filepath.Join(StateDir(), a.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", nil, err
	}
	lock, err := state.LockFile(filepath.Join(dir, lockFile))
	if err == nil {
		err = writeRecord(dir, a)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, lock, nil
}

// attach does the work of Attach once the record exists.
func attach(ctx context.Context, dir string, a *Attachment) error {
	a.BackingFile = a.Disk
	var sizeLimit int64
	if a.Format == FormatVHDFixed {
		sizeLimit = a.Size
	}
	if a.RawView {
		// Open the disk here first: a missing parent, a damaged structure or
		// a log that needs replaying then comes back with package vhd's typed
		// error instead of the helper's message.
		d, err := OpenDisk(a.Disk, a.ReadOnly)
		if err != nil {
			return err
		}
		if err := d.Close(); err != nil {
			return err
		}
		rec, err := fusefs.Mount(ctx, fusefs.Request{ID: a.ID, Kind: RawViewKind, Source: a.Disk, ReadOnly: a.ReadOnly})
		if err != nil {
			return err
		}
		a.BackingFile = filepath.Join(rec.Mountpoint, RawViewFile)
		testHook("view-mounted")
	}
	// Autoclear until the device is recorded: if this process dies first,
	// the kernel detaches the device when its handle closes. Over a raw view
	// the loop device uses direct I/O: the block device above it has its own
	// page cache, so caching the same bytes again in the view's file would
	// double the memory and add a copy (reads measured about twice as fast).
	dev, err := loop.Attach(a.BackingFile, loop.Options{ReadOnly: a.ReadOnly, SizeLimit: sizeLimit, AutoClear: true, DirectIO: a.RawView})
	if err != nil {
		return err
	}
	a.Device = dev.Path()
	var st unix.Stat_t
	if err := unix.Stat(a.BackingFile, &st); err != nil {
		dev.Detach()
		return err
	}
	a.BackingDev, a.BackingIno = st.Dev, st.Ino
	testHook("loop-attached")
	if err := writeRecord(dir, a); err != nil {
		dev.Detach()
		return err
	}
	testHook("device-recorded")
	if err := setAutoClear(a.Device, false); err != nil {
		dev.Detach()
		return err
	}
	testHook("autoclear-off")
	a.Complete = true
	if err := writeRecord(dir, a); err != nil {
		dev.Detach()
		return err
	}
	// The device stays attached after its handle is closed: autoclear is off.
	return dev.Release()
}

// setAutoClear sets or clears LO_FLAGS_AUTOCLEAR of an attached device.
func setAutoClear(device string, on bool) error { return loop.SetAutoClear(device, on) }

// undo removes whatever part of a exists: its loop device (if it is still
// bound to a's backing file), its raw view, and its state directory.
func undo(ctx context.Context, dir string, a *Attachment) error {
	var errs []error
	if boundTo(a) {
		if err := detachLoop(ctx, a.Device); err != nil {
			errs = append(errs, err)
		}
	}
	if a.RawView {
		if err := fusefs.Unmount(ctx, a.ID); err != nil && !errors.Is(err, fusefs.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// boundTo reports whether a's loop device is still bound to a's backing
// file. The path in sysfs answers without opening the device; when it differs
// (a lazily detached raw view shows its file as "/disk") the device's status
// tells, by the backing file's device and inode numbers.
func boundTo(a *Attachment) bool {
	if a.Device == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(a.Device), "loop", "backing_file"))
	if err != nil {
		return false
	}
	bf := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
	if bf == a.BackingFile {
		return true
	}
	if a.BackingIno == 0 {
		return false
	}
	dev, ino, err := loop.Backing(a.Device)
	return err == nil && dev == a.BackingDev && ino == a.BackingIno
}

// detachLoop detaches device and waits until the kernel has let go of its
// backing file (a raw view cannot be unmounted before).
func detachLoop(ctx context.Context, device string) error {
	if err := loop.DetachPath(device); err != nil {
		return err
	}
	backing := filepath.Join("/sys/block", filepath.Base(device), "loop", "backing_file")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(backing); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s still bound after detaching (opened by another process?)", device)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Detach ends the attachment of a device (/dev/loopN) or disk file. A device
// that is mounted or held by another device gives ErrBusy and stays attached.
func Detach(ctx context.Context, deviceOrDisk string) error {
	a, err := find(deviceOrDisk)
	if err != nil {
		return &Error{Op: "detach", Path: deviceOrDisk, Err: err}
	}
	dir := filepath.Join(StateDir(), a.ID)
	lock, err := state.TryLock(filepath.Join(dir, lockFile))
	if errors.Is(err, state.ErrLocked) {
		return &Error{Op: "detach", Path: a.Disk, Device: a.Device, Err: fmt.Errorf("%w: attach in progress", ErrBusy)}
	}
	if err != nil {
		return &Error{Op: "detach", Path: a.Disk, Device: a.Device, Err: err}
	}
	defer lock.Close()
	if boundTo(a) {
		if err := checkUnused(a.Device); err != nil {
			return &Error{Op: "detach", Path: a.Disk, Device: a.Device, Err: err}
		}
	}
	if err := undo(ctx, dir, a); err != nil {
		return &Error{Op: "detach", Path: a.Disk, Device: a.Device, Err: err}
	}
	return nil
}

// checkUnused fails with ErrBusy if device is mounted or held by another
// block device.
func checkUnused(device string) error {
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		return err
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return err
	}
	var at []string
	for _, m := range mounts {
		if m.Major == unix.Major(st.Rdev) && m.Minor == unix.Minor(st.Rdev) {
			at = append(at, m.Mountpoint)
		}
	}
	if len(at) > 0 {
		return fmt.Errorf("%w: mounted at %s", ErrBusy, strings.Join(at, ", "))
	}
	holders, _ := os.ReadDir(filepath.Join("/sys/block", filepath.Base(device), "holders"))
	if len(holders) > 0 {
		return fmt.Errorf("%w: held by %s", ErrBusy, holders[0].Name())
	}
	return nil
}

// MountPoints returns where the device of a is mounted, from mountinfo.
func MountPoints(a *Attachment) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(a.Device, &st); err != nil {
		return nil, err
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	var at []string
	for _, m := range mounts {
		if m.Major == unix.Major(st.Rdev) && m.Minor == unix.Minor(st.Rdev) && m.Root == "/" {
			at = append(at, m.Mountpoint)
		}
	}
	return at, nil
}

// Get returns the complete attachment of a device (/dev/loopN) or disk file.
func Get(deviceOrDisk string) (*Attachment, error) {
	a, err := find(deviceOrDisk)
	if err != nil {
		return nil, &Error{Op: "get", Path: deviceOrDisk, Err: err}
	}
	return a, nil
}

// find returns the complete attachment whose device or disk is deviceOrDisk.
// A device matches only while it is still bound to the attachment's backing
// file: once detached (by a crash, or by another process's Detach that has not
// removed the record yet), the device number is free, and the next owner of
// the device must not be taken for this attachment. Such a broken attachment
// is still found by its disk, and Cleanup removes it.
func find(deviceOrDisk string) (*Attachment, error) {
	all, err := records()
	if err != nil {
		return nil, err
	}
	want := deviceOrDisk
	if !strings.HasPrefix(want, "/dev/") {
		if abs, err := filepath.Abs(want); err == nil {
			want = abs
		}
		if r, err := filepath.EvalSymlinks(want); err == nil {
			want = r
		}
	}
	for i := range all {
		a := &all[i]
		if a.Complete && (a.Disk == want || a.Device == want && boundTo(a)) {
			return a, nil
		}
	}
	return nil, ErrNotAttached
}

// List returns the complete attachments, sorted by device.
func List() ([]Attachment, error) {
	all, err := records()
	if err != nil {
		return nil, &Error{Op: "list", Err: err}
	}
	var out []Attachment
	for _, a := range all {
		if a.Complete {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}

// records reads every record in the state directory, complete or not.
func records() ([]Attachment, error) {
	entries, err := os.ReadDir(StateDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Attachment
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		a, err := readRecord(filepath.Join(StateDir(), e.Name()))
		if err != nil {
			continue
		}
		out = append(out, *a)
	}
	return out, nil
}

func readRecord(dir string) (*Attachment, error) {
	var a Attachment
	p := filepath.Join(dir, recordFile)
	if err := state.ReadRecord(p, recordVersion, &a); err != nil {
		return nil, err
	}
	if a.ID != filepath.Base(dir) {
		return nil, fmt.Errorf("%w: %s: record of %q", state.ErrBadRecord, p, a.ID)
	}
	return &a, nil
}

// writeRecord stores a as dir/record.json (package internal/state).
func writeRecord(dir string, a *Attachment) error {
	return state.WriteRecord(filepath.Join(dir, recordFile), a)
}

// Cleanup removes what crashed callers left: attachments that Attach did not
// finish, attachments whose loop device was detached by someone else or
// whose raw view died, raw views that belong to no attachment, and dead
// FUSE mounts (fusefs.Cleanup). Attachments in progress and healthy ones are
// left alone.
func Cleanup(ctx context.Context) error {
	var errs []error
	entries, err := os.ReadDir(StateDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return &Error{Op: "cleanup", Path: StateDir(), Err: err}
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(StateDir(), e.Name())
		lock, err := state.TryLock(filepath.Join(dir, lockFile))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && !recent(dir) {
				os.RemoveAll(dir) // a directory from a caller that died at once
			}
			continue // or an Attach at work
		}
		a, err := readRecord(dir)
		switch {
		case err != nil:
			if errors.Is(err, os.ErrNotExist) {
				os.RemoveAll(dir) // died before its first record
			}
		case !a.Complete || !healthy(a):
			if boundTo(a) && checkUnused(a.Device) != nil {
				// Broken but mounted: it goes when its user unmounts and
				// detaches it.
				break
			}
			if err := undo(ctx, dir, a); err != nil {
				errs = append(errs, err)
			}
		}
		lock.Close()
	}
	// Raw views whose attachment directory is gone. Attach creates the
	// directory before the view, so a view without one is an orphan.
	views, err := fusefs.List()
	if err != nil {
		errs = append(errs, err)
	}
	for _, v := range views {
		if _, err := os.Stat(filepath.Join(StateDir(), v.ID)); v.Kind == RawViewKind && errors.Is(err, os.ErrNotExist) {
			if err := fusefs.Unmount(ctx, v.ID); err != nil && !errors.Is(err, fusefs.ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if _, err := fusefs.Cleanup(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return &Error{Op: "cleanup", Err: err}
	}
	return nil
}

// healthy reports whether a complete attachment still works: its device is
// bound to its backing file and its raw view, if any, is served.
func healthy(a *Attachment) bool {
	if !boundTo(a) {
		return false
	}
	if a.RawView {
		rec, err := fusefs.Get(a.ID)
		if err != nil {
			return false
		}
		// Still mounted and served: a view whose helper died, or whose
		// dead mount another process's Cleanup detached, is broken.
		if !fusefs.Serving(rec.Mountpoint) {
			return false
		}
	}
	return true
}

func recent(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && time.Since(fi.ModTime()) < 10*time.Second
}

// testHook, when set by a test, is called at each step of attach, so that a
// test can kill the process there.
var testHook = func(stage string) {}
