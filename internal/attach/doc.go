// Package attach makes any virtual disk a Linux block device: raw images,
// VHD (fixed, dynamic, differencing) and VHDX (fixed, dynamic, differencing).
//
// # How each format is attached
//
// Raw files and fixed VHDs are raw-backed: the virtual disk is a contiguous
// byte range of the file, so a loop device is bound to the file directly (for
// a fixed VHD with a size limit that leaves the 512-byte footer out). Every
// other format, fixed VHDX included, is attached through a raw block view: a
// FUSE file system served by a helper process (package fusefs, kind "vhd-raw")
// with one file, "disk", whose content is the virtual disk, read and written
// through package vhd; the loop device is bound to that file, with direct
// I/O (the block device's own page cache above it is the one that caches, so
// the view's file does not hold a second copy). Fixed VHDX is
// not raw-backed on purpose: its payload blocks are placed by the BAT (any
// order, interleaved with sector bitmap blocks in larger files), the file
// must get new write GUIDs in its headers before the first write (which
// differencing children check), and a pending log must be replayed before
// the payload can be trusted; only package vhd does all three.
//
// An attachment outlives the process that made it (the CLI prints the device
// and exits); Detach ends it: the loop device is detached, then the helper,
// if any, unmounts its view and exits. Detach refuses a device that is still
// mounted or held by another device (device mapper), with ErrBusy.
//
// # State and crash safety
//
// Each attachment has a directory StateDir()/<id>/ (by default
// /run/hostcompute/attach/<id>/; attach/ under $HOSTCOMPUTE_STATE_DIR when set) with a
// JSON record (see Attachment), written through a synced temporary file and
// a rename, and a lock file held by Attach while it works. Attach writes the
// record before it starts anything, binds the loop device with autoclear on
// (so the kernel detaches it by itself if Attach dies before the next step),
// records the device, then turns autoclear off and records the attachment as
// complete. Cleanup, which Attach also runs first, finds what crashed callers
// left: unfinished attachments are undone, attachments whose loop device was
// detached behind our back or whose helper died are removed, and raw-view
// helpers that belong to no attachment are unmounted.
//
// # Concurrency
//
// A disk is attached at most once at a time: a second Attach of the same file
// fails with ErrAttached (which matches fs.ErrExist) and names the device.
// Differencing disks open their parents read-only; do not attach a parent for
// writing while a child of it is attached. A raw view serves many readers at
// once, as far as package vhd's own locking allows.
//
// Programs that attach non-raw disks must call fusefs.MaybeRunHelper first
// in main (and in TestMain), because the raw view helper is the program
// itself.
package attach
