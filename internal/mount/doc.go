// Package mount mounts and unmounts the file systems that layer stacks are made of:
// overlayfs unions, ext4 and NTFS file systems on block devices and bind mounts. What
// is mounted is read from the kernel's table with internal/mountinfo, never kept in
// memory across processes.
//
// # Plans and the one executor
//
// A mount is data: a Mount value (Type, Source, Target, Options) is one serialized
// system call, as containerd's mount.Mount is, and a Plan is a list of them —
// directories to make, a file bound to a loop device, a device formatted, file
// systems and unions mounted. Planning does nothing and needs no privileges; an
// Executor applies a plan step by step and returns its Undo, which takes it down
// in reverse order. When a step fails, what the steps before it did is undone
// before Apply returns, so a failed plan leaves nothing; Executor.Hook lets tests
// fail any step. Step types the package does not run itself (the host engine's
// disk attachments through FUSE raw views, its CIM views) are Handlers of the
// Executor, so that they are steps of the same plans.
//
// This package, with its loop-device driver internal/loop, is the only non-test
// code of the project that calls mount(2), umount(2), the new mount API or loop
// ioctls; internal/depcheck checks it.
//
// # Read-only ext4
//
// A read-only ext4 step is always mounted with "noload": a read-only disk must not
// be written, and replaying a journal writes the device (and fails outright on a
// loop device attached read-only). A journal that needs recovery is therefore not
// replayed on a read-only mount; mount the disk writable once to recover it. Layer
// images made by this project have no journal.
//
// # Overlay unions
//
// MountOverlay builds the union with one mount(2) call when it can: the option
// string ("lowerdir=a:b:...,upperdir=...,workdir=...") must fit in the page the
// kernel copies and no path may hold ',', ':' or '\', which the string would
// need escaped. When absolute names overflow the page, as a hundred layers of a
// store do (moby#26380: about 57 layers of absolute paths), the lowers are named
// relative to their deepest common directory, from a thread that has its own
// working directory (unshare CLONE_FS) there, as container engines do; mountinfo
// then shows those relative names. Any other union, or one that mount(2) refuses,
// goes through the new mount API: fsopen("overlay"), one fsconfig "lowerdir+" call
// per lower layer, "upperdir" and "workdir" when the union is writable,
// FSCONFIG_CMD_CREATE, fsmount and move_mount, which has no length limit, takes
// paths with ':' and ',' unescaped, and reports the kernel's explanation of a
// failure in the error. One mount(2) costs less than a call per layer and a walk of
// each absolute path: a quarter less for a union of 128 store layers. The kernel's own limit is 500 lower layers
// (OVL_MAX_STACK); a longer stack is refused with ErrTooManyLayers before anything
// is mounted. Stacks are not nested to go beyond it: a nested overlay cannot be
// used as a lower of another one more than once (FILESYSTEM_MAX_STACK_DEPTH is 2)
// and whiteouts of the inner union would be interpreted twice, so callers that need
// more layers must flatten some of them first.
//
// A union without Upper and Work is mounted read-only. Overlayfs refuses such a union
// of a single layer, so that one is a read-only bind mount of the layer instead; the
// view is the same except that overlay whiteouts in that layer stay visible as the
// 0/0 character devices they are, where a union would hide them (there is nothing
// below them to hide). "lowerdir+" needs Linux 6.8
// or later; an older kernel gives an error matching errors.ErrUnsupported.
//
// # Unmounting
//
// Unmount is a plain umount2 without flags, so a busy mount fails with an error
// matching ErrBusy instead of disappearing from the namespace while still in use.
// UnmountAll unmounts everything at or below a directory, deepest first; with
// Detach it falls back to a lazy unmount (MNT_DETACH) for mounts still busy, which is
// only meant for cleaning up after a crashed process, when no caller is left to
// close the files keeping the mount busy.
//
// # Errors
//
// Mount and unmount failures are *Error values naming the operation, the target and,
// for overlays, the kernel's own message from the file system context (for example
// "overlay: failed to resolve '/x': -2").
package mount
