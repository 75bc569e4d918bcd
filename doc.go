// Package hostcompute is hcsshim's legacy root API on Linux: the functions and types a
// program imports as "github.com/Microsoft/hcsshim", with the same names and
// signatures, so that a port is mostly an import change.
//
// # Layers
//
// This package holds the layer part of that API. It is a thin layer over package
// wclayer, which does the work on layer folders; see that package for what a layer
// folder holds and how writes are staged.
//
// Functions take a [DriverInfo] and a layer id, as hcsshim's graph driver calls do. The
// layer folder is filepath.Join(info.HomeDir, id); with an empty HomeDir the id is the
// layer's full path, which is how hcsshim itself calls them. Parent layers are given as
// full paths, immediate parent first and base layer last.
//
// The hcsshim signatures carry no context. Each function here creates one with
// context.Background and forwards to wclayer; programs that need cancellation call
// wclayer directly.
//
// Names in layer readers and writers are Windows paths relative to the layer, such as
// `Files\Windows\System32\notepad.exe`, and file data travels as Win32 backup streams
// (see winfile.BackupReader and winfile.BackupWriter). winfile.BasicInfo takes the place
// of go-winio's FileBasicInfo.
//
// # Writable layers
//
// [CreateSandboxLayer] makes a read-write layer: a folder with sandbox.vhdx, a sparse
// 20 GiB dynamic VHDX formatted ext4. [ActivateLayer] attaches and mounts that disk,
// [PrepareLayer] mounts an overlayfs union of the parents over it, and
// [GetLayerMountPath] says where the layer can be used. Both are counted across
// processes and undone in reverse order by [UnprepareLayer] and [DeactivateLayer];
// see wclayer.ActivateLayer for where things are mounted. [ProcessBaseLayer] makes a
// base layer's template disks; [ProcessUtilityVMImage] makes a utility VM's, then
// reports that its system volume (registry and BCD edits) cannot be written on Linux.
//
// # Differences from Windows
//
//   - No privileges are needed: hcsshim asks for SeBackupPrivilege and
//     SeRestorePrivilege, which have no Linux counterpart.
//   - [NameToGuid] is deterministic but is not the Host Compute Service's algorithm,
//     which is not public; the IDs differ from the ones Windows computes.
//   - [GetSharedBaseImages] returns an error matching errors.ErrUnsupported, as there
//     is no central image store.
//   - The error values of this package are plain Go errors, not syscall.Errno values,
//     and are tested with errors.Is; see the errors section below.
//
// # Errors
//
// The sentinel errors (ErrElementNotFound, ErrTimeout, ...) keep hcsshim's names.
// Those that mean something does not exist match fs.ErrNotExist, and [IsNotExist],
// [IsAlreadyStopped], [IsPending] and [IsTimeout] test for them through wrapping.
//
// # Not here yet
//
// Containers, processes, HNS networks and endpoints, and container statistics come
// with the compute work and are not part of this package yet.
package hostcompute
