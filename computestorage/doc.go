// Package computestorage is hcsshim's HCS storage API on Linux: the functions and
// types of "github.com/Microsoft/hcsshim/computestorage", with the same names and
// signatures. On Windows these wrap computestorage.dll, the storage calls that came
// after the graph driver API and manage container layers and scratch space apart from
// containers.
//
// A layer is a folder chosen by the caller, in the form package wclayer reads and
// writes; this package is a thin layer over wclayer. Parent layers are given as a
// [LayerData] document, whose Layers are the parents, immediate parent first. The
// types marshal to the JSON documents the Host Compute Service takes (see each type).
//
// The functions that work now are [ImportLayer], [ExportLayer], [DestroyLayer], the
// virtual disk functions [FormatWritableLayerVhd] and [GetLayerVhdMountPath] (on a
// [VirtualDisk], which stands for hcsshim's windows.Handle), [SetupContainerBaseLayer]
// and [SetupUtilityVMBaseLayer] (a formatted base VHDX and its differencing child, each
// with a WithOptions form for the size in bytes and the file system), and
// [SetupBaseOSLayer] and [SetupBaseOSVolume] (container layers; utility VM system volumes
// are Windows-only, see [ErrWindowsOnly]).
//
// The filter functions realise both filter types, WCIFS and UnionFS, with overlayfs
// (other types give [ErrUnsupportedFilter]): [InitializeWritableLayer] gives a layer
// folder its scratch disk and chain; [AttachLayerStorageFilter] activates and prepares
// it as wclayer.ActivateLayer and wclayer.PrepareLayer do (union at the path
// wclayer.GetLayerMountPath returns); [AttachOverlayFilter] mounts the union over an
// already mounted writable volume, at the volume's own path. All are counted across
// processes and undone by their Detach forms; see package host for the state
// kept under /run/hostcompute/layers and crash recovery.
//
// Programs that attach VHD or VHDX disks through this package must call [MaybeRunHelper]
// first in main (and in TestMain): disks that are not raw are served to their loop device
// by a helper process that is the program itself, re-executed.
package computestorage
