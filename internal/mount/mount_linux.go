package mount

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
)

// MountOverlay mounts the union o at target, an existing directory: a plan of
// one step. On failure nothing is mounted.
func MountOverlay(target string, o Overlay) error {
	if err := o.validate(target); err != nil {
		return err
	}
	_, err := (&Executor{}).Apply(context.Background(), Plan{OverlayMount(target, o)})
	return err
}

func mountOverlay(target string, o Overlay) error {
	if err := o.validate(target); err != nil {
		return err
	}
	if len(o.Lower) == 1 && o.Upper == "" {
		return bindReadOnly(o.Lower[0], target, "mount overlay")
	}
	if data, dir, ok := overlayOptionString(o); ok {
		// One mount(2) is the fast way. Should it fail, the new mount API below
		// tries again: the kernel explains a failure only to a file system
		// context, and the error should carry that explanation.
		if mountFrom(dir, o.source(), target, data, o.Upper == "") == nil {
			return nil
		}
	}
	return mountOverlayContext(target, o)
}

// mountOverlayContext mounts o through a file system context, one fsconfig call
// per lower layer, which has no length limit and reports the kernel's messages.
func mountOverlayContext(target string, o Overlay) error {
	fail := func(src string, fsfd int, err error) error {
		e := &Error{Op: "mount overlay", Target: target, Source: src, Err: err}
		if fsfd >= 0 {
			e.Detail = contextMessages(fsfd)
			if errors.Is(err, unix.EINVAL) && strings.Contains(e.Detail, "lowerdir+") {
				e.Err = fmt.Errorf("%w (overlay's lowerdir+ needs Linux 6.8 or later): %w", errors.ErrUnsupported, err)
			}
		}
		return e
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENODEV) {
			err = fmt.Errorf("%w: fsopen(overlay): %w", errors.ErrUnsupported, err)
		}
		return fail("", -1, err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", o.source()); err != nil {
		return fail("", fsfd, fmt.Errorf("fsconfig source: %w", err))
	}
	for _, l := range o.Lower {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			return fail(l, fsfd, fmt.Errorf("fsconfig lowerdir+: %w", err))
		}
	}
	attr := 0
	if o.Upper != "" {
		if err := unix.FsconfigSetString(fsfd, "upperdir", o.Upper); err != nil {
			return fail(o.Upper, fsfd, fmt.Errorf("fsconfig upperdir: %w", err))
		}
		if err := unix.FsconfigSetString(fsfd, "workdir", o.Work); err != nil {
			return fail(o.Work, fsfd, fmt.Errorf("fsconfig workdir: %w", err))
		}
	} else {
		attr = unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fail("", fsfd, fmt.Errorf("creating the file system: %w", err))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fail("", fsfd, fmt.Errorf("fsmount: %w", err))
	}
	defer unix.Close(mfd)
	// Until move_mount the mount is detached: closing mfd on failure drops it.
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fail("", -1, fmt.Errorf("move_mount: %w", err))
	}
	return nil
}

// optionPage is the most of mount(2)'s option string the kernel reads: one page,
// its terminating NUL included.
const optionPage = 4096

// overlayOptionString returns the option string of one mount(2) call for o, and
// the directory its lower layers' names are relative to ("" when they are
// absolute), if there is one: no path may hold a character the string would need
// escaped (a comma, a colon or a backslash), and the string must fit in optionPage. When absolute
// names do not fit, as with a hundred layers of a store, the lowers are named
// relative to their deepest common directory (layers/<id>/fs becomes <id>/fs), the
// way container engines shorten the string; mountinfo then shows those relative
// names. A stack whose string fits neither way goes through the file system
// context, one lower at a time.
func overlayOptionString(o Overlay) (data, dir string, ok bool) {
	// One pass over each path, and lengths before strings: this runs for every
	// union, a hundred paths and more, in processes that often do nothing else.
	for _, p := range [2]string{o.Upper, o.Work} {
		if strings.ContainsAny(p, ",:\\") {
			return "", "", false
		}
	}
	size := len("lowerdir=") + len(o.Lower) - 1
	prev := ""
	for _, l := range o.Lower {
		if !plainAbsoluteAfter(l, prev) {
			return "", "", false
		}
		size += len(l)
		prev = l
	}
	if o.Upper != "" {
		size += len(",upperdir=") + len(o.Upper) + len(",workdir=") + len(o.Work)
	}
	build := func(lowers []string, trim int) string {
		var b strings.Builder
		b.Grow(size)
		b.WriteString("lowerdir=")
		for i, l := range lowers {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(l[trim:])
		}
		if o.Upper != "" {
			b.WriteString(",upperdir=")
			b.WriteString(o.Upper)
			b.WriteString(",workdir=")
			b.WriteString(o.Work)
		}
		return b.String()
	}
	if size < optionPage {
		return build(o.Lower, 0), "", true
	}
	// The deepest directory above every lower: a prefix of the first lower
	// that ends before a '/' of every other one.
	dir = o.Lower[0][:strings.LastIndexByte(o.Lower[0], '/')]
	for _, l := range o.Lower[1:] {
		for dir != "" && !(len(l) > len(dir) && l[len(dir)] == '/' && l[:len(dir)] == dir) {
			dir = dir[:strings.LastIndexByte(dir, '/')]
		}
	}
	// Each name loses dir and its '/'.
	size -= len(o.Lower) * (len(dir) + 1)
	if size >= optionPage {
		return "", "", false
	}
	if dir == "" {
		return build(o.Lower, 1), "/", true
	}
	return build(o.Lower, len(dir)+1), dir, true
}

// plainAbsolute reports whether p is an absolute, clean path other than "/"
// (filepath.Clean(p) == p) without a character mount(2)'s option string would
// need escaped: a comma, a colon or a backslash.
func plainAbsolute(p string) bool {
	return plainAbsoluteAfter(p, "")
}

// plainAbsoluteAfter is plainAbsolute(p) for a p that follows prev, a path
// plainAbsolute accepts (or ""): the lowers of a union share most of their
// names, and the elements p shares with prev whole are not looked at again.
func plainAbsoluteAfter(p, prev string) bool {
	if len(p) < 2 || p[0] != '/' || p[len(p)-1] == '/' {
		return false
	}
	// start is the first byte of the element p's check resumes at: after the
	// last '/' the two paths share.
	n := min(len(p), len(prev))
	i := 0
	for i < n && p[i] == prev[i] {
		i++
	}
	start := 1
	if j := strings.LastIndexByte(p[:i], '/'); j > 0 {
		start = j + 1
	}
	for i := start; i <= len(p); i++ {
		if i < len(p) {
			switch p[i] {
			case ',', ':', '\\':
				return false
			case '/':
			default:
				continue
			}
		}
		// An element p[start:i] ends here: empty ("//"), "." or ".." is not clean.
		if e := p[start:i]; e == "" || e == "." || e == ".." {
			return false
		}
		start = i + 1
	}
	return true
}

// mountFrom mounts an overlay with mount(2) and option string data, whose
// relative lower names are resolved from dir (none when dir is ""). The working
// directory is a process's, so the call runs on a thread of its own that has
// unshared it (CLONE_FS) and is never handed back to the Go scheduler: the
// thread ends with its goroutine, and no other goroutine sees the directory change.
func mountFrom(dir, source, target, data string, readOnly bool) error {
	var flags uintptr
	if readOnly {
		flags = unix.MS_RDONLY
	}
	if dir == "" {
		return unix.Mount(source, target, "overlay", flags, data)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- err
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- err
			return
		}
		err := unix.Mount(source, target, "overlay", flags, data)
		// Leave dir before answering: the thread may outlive the call a
		// moment, and a working directory inside a mount keeps it busy.
		if cerr := unix.Chdir("/"); err == nil && cerr != nil {
			err = fmt.Errorf("leaving %s: %w", dir, cerr)
			if uerr := unix.Unmount(target, 0); uerr != nil {
				err = errors.Join(err, fmt.Errorf("unmounting %s again: %w", target, uerr))
			}
		}
		errc <- err
	}()
	return <-errc
}

// contextMessages drains the messages the kernel queued on a file system context
// ("e overlay: ..." lines), joined by "; ".
func contextMessages(fsfd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for range 32 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		m := string(buf[:n])
		if len(m) > 2 && m[1] == ' ' {
			m = m[2:] // severity prefix: e, w, i
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

// MountExt4 mounts the ext4 file system on device at target, an existing
// directory: a plan of one step. readOnly mounts it read-only with "noload"
// (see the package documentation).
func MountExt4(device, target string, readOnly bool) error {
	_, err := (&Executor{}).Apply(context.Background(), Plan{FilesystemMount(TypeExt4, device, target, readOnly)})
	return err
}

// mountExt4 mounts ext4. Read-only means the device is never written, so the
// journal is not loaded: replaying it would write the device (and fails on a
// read-only one).
func mountExt4(device, target string, readOnly bool, opts ...string) error {
	flags := uintptr(0)
	var data []string
	for _, o := range opts {
		if f, ok := flagOptions[o]; ok {
			flags |= f
		} else if o != "ro" && o != "rw" {
			data = append(data, o)
		}
	}
	if readOnly {
		flags |= unix.MS_RDONLY
		if !slices.Contains(data, "noload") {
			data = append(data, "noload")
		}
	}
	if err := unix.Mount(device, target, "ext4", flags, strings.Join(data, ",")); err != nil {
		return &Error{Op: "mount ext4", Target: target, Source: device, Err: err}
	}
	return nil
}

// flagOptions maps per-mount options, as mountinfo shows them, to mount(2)
// flags.
var flagOptions = map[string]uintptr{
	"nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"sync": unix.MS_SYNCHRONOUS, "dirsync": unix.MS_DIRSYNC, "noatime": unix.MS_NOATIME,
	"nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME,
	"strictatime": unix.MS_STRICTATIME, "lazytime": unix.MS_LAZYTIME,
}

// bindReadOnly bind-mounts source at target read-only, with open_tree and
// mount_setattr so that the mount is never writable, even for a moment.
func bindReadOnly(source, target, op string) error {
	fail := func(err error) error {
		return &Error{Op: op, Target: target, Source: source, Err: err}
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fail(fmt.Errorf("open_tree: %w", err))
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fail(fmt.Errorf("mount_setattr: %w", err))
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fail(fmt.Errorf("move_mount: %w", err))
	}
	return nil
}

// Bind bind-mounts the directory source at target: a plan of one step.
func Bind(source, target string) error {
	_, err := (&Executor{}).Apply(context.Background(), Plan{BindMount(source, target, false)})
	return err
}

func bind(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return &Error{Op: "bind mount", Target: target, Source: source, Err: err}
	}
	return nil
}

// Unmount unmounts the file system at target. A busy file system gives an error
// matching ErrBusy, and a target that is not a mount point one matching
// ErrNotMounted; neither is unmounted lazily.
func Unmount(target string) error {
	return unmount(target, 0)
}

// UnmountDetach unmounts target lazily (MNT_DETACH): it leaves the namespace
// at once and the kernel releases it when its last user goes. Only for
// cleaning up after crashes, when no caller is left to close what keeps a
// mount busy. A target with nothing mounted is not an error.
func UnmountDetach(target string) error {
	err := unmount(target, unix.MNT_DETACH)
	if errors.Is(err, ErrNotMounted) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func unmount(target string, flags int) error {
	err := unix.Unmount(target, flags)
	for errors.Is(err, unix.EINTR) {
		err = unix.Unmount(target, flags)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		err = fmt.Errorf("%w: %w", ErrBusy, err)
	case errors.Is(err, unix.EINVAL):
		err = fmt.Errorf("%w: %w", ErrNotMounted, err)
	}
	op := "unmount"
	if flags&unix.MNT_DETACH != 0 {
		op = "lazy unmount"
	}
	return &Error{Op: op, Target: target, Err: err}
}

// canonical makes path absolute with its symbolic links resolved, as the kernel
// shows mount points.
func canonical(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return p, nil
}

// UnmountAll unmounts every file system mounted at dir or below it, the most
// recently mounted first (children before their parents), and returns the mounts it
// found, in the order they were unmounted. With detach, a mount still busy is
// unmounted lazily (MNT_DETACH): it leaves the namespace at once and the kernel
// releases it when its last user goes. Without detach, UnmountAll stops at the first
// failure.
func UnmountAll(dir string, detach bool) ([]mountinfo.Mount, error) {
	p, err := canonical(dir)
	if err != nil {
		return nil, err
	}
	ms, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	under := mountinfo.Under(ms, p)
	// The table lists a mount after its parent, so reverse order unmounts children
	// and stacked mounts first.
	slices.Reverse(under)
	for i, m := range under {
		err := Unmount(m.Mountpoint)
		if errors.Is(err, ErrNotMounted) {
			continue // gone meanwhile, with its parent say
		}
		if errors.Is(err, ErrBusy) && detach {
			err = unmount(m.Mountpoint, unix.MNT_DETACH)
		}
		if err != nil {
			return under[:i], err
		}
	}
	return under, nil
}
