// Package layers mounts container layer stacks on Linux: hcsshim's internal/layers API
// (MountLCOWLayers, MountWCOWLayers, GetHCSLayers, ToHostHcsSchemaLayers,
// MountSandboxVolume, RemoveSandboxMountPoint, ReleaseCimFSHostLayers) with the same
// names and, as far as Go types allow, the same signatures, so that a port is mostly
// an import change. The package is a thin front: the stacks are planned and mounted
// by the host engine (package host, whose documentation has the life cycle), and
// every mount, attachment and FUSE view goes through its one executor.
//
// # Linux layers (LCOW)
//
// MountLCOWLayers takes ext4 layer images, each usually a fixed VHD (the file system
// followed by a 512-byte VHD footer, as tar2ext4 -vhd writes it; a raw ext4 image
// without footer works too), and a scratch disk. Under guestRoot it
//
//  1. attaches the scratch disk read-write through a loop device, making it first if
//     the file does not exist (a sparse fixed VHD formatted ext4, WithScratchSize
//     bytes, 20 GiB by default), and mounts it at guestRoot;
//  2. attaches every layer read-only, with the footer outside the device, and mounts
//     it read-only at guestRoot/layers/<i> (i = 0 for the top-most layer);
//  3. mounts an overlay union at guestRoot/rootfs: the layers as lowers, top-most
//     first, guestRoot/upper as the writable layer and guestRoot/work as overlayfs's
//     work directory.
//
// It returns guestRoot/rootfs (the container's root file system), guestRoot (the
// scratch mount) and a ResourceCloser. Loop devices of raw-backed disks are attached
// with autoclear, so the kernel detaches each one when its mount goes: a process
// that exits leaves mounts (on purpose, see the hcs layer mount command) but never
// such a loop device that no mount uses. Raw-view attachments outlive the process
// by design of internal/attach; hcs layer unmount ends them with the mounts.
//
// UnmountAll takes a stack down from the kernel's tables alone (mountinfo, loop
// devices, internal/attach's records), for programs such as hcs layer mount whose
// mounts outlive them, and after crashes.
//
// # Windows layers (WCOW)
//
// MountWCOWLayers makes the union of the Files/ folders of layer folders written by
// package winlayer, or of CIM layers (each mounted read-only through a FUSE view; a
// CIM that forks its parents shows their files already, so those are not stacked
// again), with the scratch folder's Files/ as the writable layer (or, when
// the scratch folder holds a sandbox.vhdx, of any disk format, the Files/ of that
// disk's ext4 file system). A layer's deletions (its tombstones.txt)
// become a directory of overlay whiteouts stacked right below it, so that they hide
// its parents' files. Deletions made through the union are overlay whiteouts in
// the scratch; Windows metadata of files written through it is not recorded.
//
// # The closer contract
//
// A stack is a plan of steps (package host); the executor records the undo of each
// step that acquired something (a loop device, a mount, a directory made). When a
// later step fails, they are undone in reverse order before the error is returned,
// so a failed call leaves nothing behind: no mount, no loop device, no FUSE helper,
// no scratch file it created. ResourceCloser.Release undoes the steps of a
// successful call the same way. Release stops at the first step that
// fails (a busy mount, say) and keeps the rest, so it can be called again once the
// cause is gone; after it succeeded, further calls return nil.
//
// # Concurrency
//
// Layer images may be in any number of stacks at once. Raw images and fixed VHDs
// get a read-only loop device per stack; other formats share one read-only
// raw-view attachment (internal/attach attaches a disk once), ended by the release
// of the last stack that has it mounted. A scratch disk belongs to one stack at a time:
// a scratch already attached is refused with ErrAlreadyMounted (a check, then the
// attach, so two calls racing on the same new scratch are not excluded; callers
// that start containers concurrently must not share a scratch path). A
// ResourceCloser may be released from any goroutine.
//
// # Differences from hcsshim
//
//   - There is no utility VM: containers run on the host. The vm parameters have type
//     *UtilityVM, a placeholder whose only accepted value is nil; a non-nil vm gives
//     an error matching errors.ErrUnsupported.
//   - resources.ResourceCloser becomes this package's ResourceCloser (the same single
//     method, Release(ctx) error), and hcsschema.Layer becomes SchemaLayer (the same
//     JSON fields Id, Path and PathType).
//   - LCOWLayer.Partition must be 0: layers on partitioned disks are not supported
//     (ErrUnsupportedDisk).
//   - Layer images and scratch disks may be raw images or VHD/VHDX of any kind. Raw
//     images and fixed VHDs are bound to loop devices directly (autoclear on);
//     dynamic and differencing VHDs and every VHDX go through internal/attach's
//     FUSE raw view, an attachment that the closer ends. A scratch disk whose first
//     64 KiB are zeros (a blank VHDX from hcs vhd create, say) is formatted ext4 at
//     its first mount; one holding anything else than ext4 is refused, not erased.
//     A new scratch disk is always a fixed VHD, whatever its name.
//   - MountWCOWLayers returns a directory, not a volume GUID path: volumeMountPath when
//     given, else <scratch>/mount. MountSandboxVolume bind-mounts such a directory, or
//     mounts a block device holding ext4 or NTFS, at hostPath.
//   - MountLCOWLayers and MountWCOWLayers take extra, optional Options (scratch size,
//     logger) after the hcsshim parameters.
//   - ReleaseCimFSHostLayers takes down the union at <scratch>/mount and ends the
//     FUSE views of the container's CIM layers (and its MountCimLayer mount), also
//     those a crashed process left.
//
// # Limits
//
// One union has at most 500 lower layers (the kernel's limit, see internal/mount);
// more give an error matching ErrTooManyLayers before anything is attached. The
// overlay is mounted with the new mount API, so the one-page limit of mount(2)'s
// option string does not apply.
package layers
