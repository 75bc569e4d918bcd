// Package host is the host engine: it owns everything the host holds for
// layers — disks attached as block devices, the file systems mounted from
// them, the FUSE helper processes that serve CIM images and raw views of
// VHDX disks, the activations and unions of writable layers, and the mounted
// stacks of containers. The seed-compatible packages (wclayer, wclayer/cim,
// computestorage, layers, the root package) and the CLI call it and nothing
// below it.
//
// # Mounts are data
//
// Everything the engine mounts is first written down as a Plan: a list of
// Mount values (Type, Source, Target, Options), each one a serialized system
// call — make a directory, attach a disk (TypeDisk, or a plain loop device),
// format it, mount ext4 or NTFS from it, mount an overlay union, bind-mount,
// mount a CIM view (TypeCIM). The pipeline disk → block device → file system
// → union is built once, here, as such plans, and one executor (package internal/mount) applies every plan: it is the only
// code of the project that calls mount(2), umount(2), the new mount API or
// the loop ioctls. Apply returns the Undo of the plan, which takes it down in
// reverse order; when a step fails, what the steps before it made is undone
// before Apply returns, so a failed call leaves nothing.
//
// Read-only ext4 is always mounted with "noload": a read-only disk is never
// written, and replaying a journal would write it (and fails outright on a
// device attached read-only). A journal that needs recovery is therefore not
// replayed on a read-only mount: mount the disk writable once to recover it.
// Layer images made by this project have no journal.
//
// # The lifecycle of a disk
//
//	file ──AttachDisk──▶ attached ──mount──▶ mounted ──Unmount──▶ attached ──DetachDisk──▶ file
//
// A disk file (raw, VHD or VHDX, any type) is attached as /dev/loopN; formats
// a loop device cannot read are served through a raw view (a FUSE file
// holding the virtual disk, in a helper process) under the loop device. The
// attachment is recorded (attach/ under the state root) before anything is
// made, with the loop device on autoclear until the record says "complete",
// so a crash at any point leaves either nothing or a record that the next
// call's cleanup finishes or undoes. An attachment outlives its process;
// DetachDisk refuses a device still mounted (ErrDiskBusy).
//
// # The lifecycle of a writable layer
//
//		         Activate          Prepare            Unprepare          Deactivate
//		created ─────────▶ active ─────────▶ prepared ─────────▶ active ─────────▶ created
//		                 (volume)           (union)
//
//	  - created: a layer folder with a scratch disk (sandbox.vhdx). Nothing is
//	    held.
//	  - active: the disk is attached and its file system mounted at the
//	    layer's volume path (layers/<GUID>/volume under the state root).
//	    Activations are counted: n Activate calls need n Deactivate calls, in
//	    any processes.
//	  - prepared: an overlayfs union of the parent layers, with the volume's
//	    Files/ as the writable layer, is mounted at the union path
//	    (layers/<GUID>/union). Counted like activations; preparing again with
//	    other parents is refused (ErrParentsDiffer).
//	  - The last Deactivate of a layer still prepared is refused
//	    (ErrStillPrepared): Unprepare first, the order Windows requires.
//	    MountPath gives the union when prepared, the volume when only active.
//
// AttachOverlay and DetachOverlay are the same union put over a volume that
// is mounted already (computestorage's filter functions): the union is
// mounted on top of the volume itself.
//
// Each layer's counts live in one record (state.json), changed under the
// entry's lock. Every call first reconciles the record with the kernel: a
// union with no preparation counted, or a volume and attachment left by a
// first Activate that died before saving its count (the record says
// "pending"), are taken down; a counted mount that vanished is made again by
// the next Activate or Prepare.
//
// # The lifecycle of a container's stack
//
//	layers ──plan──▶ Plan ──Apply──▶ mounted (Undo held) ──Release──▶ nothing
//
// A stack (read-only layers, a scratch, a union) is planned, applied and
// held by its Undo, which the layers package returns as its ResourceCloser.
// Nothing about a stack is recorded by the engine: a caller that keeps the
// plan (the store does) takes it down from another process with Unapply;
// otherwise UnmountAll finds it again from the kernel's tables (mountinfo,
// the loop devices' sysfs attributes and the attachment records) and takes
// it down, also after the process that mounted it died.
//
// # State
//
// All of it lives under one state root, /run/hostcompute unless
// $HOSTCOMPUTE_STATE_DIR names another (package internal/state): attach/,
// fuse/, layers/, mounts/ and cim/. Records are versioned JSON written
// atomically (internal/atomicfile); one that cannot be read is kept for
// inspection and reported (ErrCorruptState), never deleted. Each entry is
// guarded by an flock on a file in it; a lock nobody holds means its owner
// is gone, which is how crashes are found.
//
// Programs that use the engine must call MaybeRunHelper first in main (and
// in TestMain), because the FUSE helpers are the program itself.
package host
