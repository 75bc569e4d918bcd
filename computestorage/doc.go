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
// The functions that work now are [ImportLayer], [ExportLayer] and [DestroyLayer]. The
// filter functions (AttachLayerStorageFilter, DetachLayerStorageFilter,
// AttachOverlayFilter, DetachOverlayFilter, InitializeWritableLayer), the virtual disk
// functions (FormatWritableLayerVhd, GetLayerVhdMountPath) and the base-OS functions
// (SetupBaseOSLayer, SetupBaseOSVolume, SetupContainerBaseLayer,
// SetupUtilityVMBaseLayer) come with the virtual disk and mount work and are not part
// of this package yet. [OsLayerOptions] and [OsLayerType] are defined already, so that
// documents holding them can be built and read.
package computestorage
