package hostcompute

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/wclayer"
)

// DriverInfo locates layers, as hcsshim's graph driver API does. The folder of the
// layer with a given id is filepath.Join(HomeDir, id); with an empty HomeDir the id is
// the layer's full path.
type DriverInfo struct {
	// Flavour is the Windows graph driver type: 0 for the diff driver, 1 for the filter
	// driver (the value hcsshim uses). It does not change how layers are stored here.
	Flavour int
	// HomeDir is the folder that holds the layers, or "" when ids are full paths.
	HomeDir string
}

// layerPath returns the folder of layer id.
func layerPath(info DriverInfo, id string) string {
	return filepath.Join(info.HomeDir, id)
}

// WC_LAYER_DESCRIPTOR describes a layer as the Windows layer APIs take it: its ID, its
// flags and its folder path. See wclayer.WC_LAYER_DESCRIPTOR.
//
//nolint:revive // the name is the Windows structure's, kept for ports.
type WC_LAYER_DESCRIPTOR = wclayer.WC_LAYER_DESCRIPTOR

// LayerReader reads the contents of a layer: Next moves to the next file and returns
// its layer-relative Windows path, data size and basic information (nil for a file the
// layer removes from its parents), Read reads that file as a Win32 backup stream, and
// Close releases the reader. Next returns io.EOF after the last file.
type LayerReader = wclayer.LayerReader

// LayerWriter writes a new layer: Add starts a file or directory, whose Win32 backup
// stream then goes to Write; AddLink adds a hard link; Remove records a file of a parent
// layer as deleted; Close completes the layer. The layer appears in its folder only
// when Close succeeds.
type LayerWriter = wclayer.LayerWriter

// CreateLayer creates a new, empty, read-only layer for id on top of the layer folder
// parent ("" for a base layer). The parent's own parents, from its layerchain.json,
// follow it in the new layer's chain.
func CreateLayer(info DriverInfo, id, parent string) error {
	return wclayer.CreateLayer(context.Background(), layerPath(info, id), parent)
}

// DestroyLayer removes the folder of layer id and everything in it. A missing layer is
// not an error.
func DestroyLayer(info DriverInfo, id string) error {
	return wclayer.DestroyLayer(context.Background(), layerPath(info, id))
}

// LayerExists reports whether a layer with the given id exists: whether its folder
// holds a layer written by this project.
func LayerExists(info DriverInfo, id string) (bool, error) {
	return wclayer.LayerExists(context.Background(), layerPath(info, id))
}

// ExportLayer writes layer layerID as a transport folder at exportFolderPath, which
// must not exist or be empty; the folder appears only when complete. The transport
// format is the one Windows' ExportLayer writes and ImportLayer reads (see
// wclayer.ExportLayer). For a read-only layer parentLayerPaths are accepted for
// compatibility: a layer folder holds all of its own content. A sandbox (scratch)
// layer exports its changes to parentLayerPaths (its layerchain.json when none are
// given), with deletions as tombstones, as wclayer.ExportLayer describes.
func ExportLayer(info DriverInfo, layerID string, exportFolderPath string, parentLayerPaths []string) error {
	return wclayer.ExportLayer(context.Background(), layerPath(info, layerID), exportFolderPath, parentLayerPaths)
}

// ImportLayer imports the transport folder at importFolderPath as the new layer
// layerID. The parent layers must already exist at parentLayerPaths, immediate parent
// first. The layer appears only when the import is complete.
func ImportLayer(info DriverInfo, layerID string, importFolderPath string, parentLayerPaths []string) error {
	return wclayer.ImportLayer(context.Background(), layerPath(info, layerID), importFolderPath, parentLayerPaths)
}

// NewLayerReader returns a reader of the contents of layer layerID, as a
// *FilterLayerReader. For a read-only layer parentLayerPaths are accepted for
// compatibility; the reader needs only the layer's own folder. A sandbox (scratch)
// layer reads as its changes to parentLayerPaths (see wclayer.NewLayerReader).
// Unlike on Windows, no privilege is needed.
func NewLayerReader(info DriverInfo, layerID string, parentLayerPaths []string) (LayerReader, error) {
	r, err := wclayer.NewLayerReader(context.Background(), layerPath(info, layerID), parentLayerPaths)
	if err != nil {
		return nil, err
	}
	return &FilterLayerReader{r: r}, nil
}

// NewLayerWriter returns a writer of the new layer layerID on top of
// parentLayerPaths (immediate parent first), as a *FilterLayerWriter. The layer is
// staged beside its folder and appears there only when Close succeeds. Unlike on
// Windows, no privilege is needed.
func NewLayerWriter(info DriverInfo, layerID string, parentLayerPaths []string) (LayerWriter, error) {
	w, err := wclayer.NewLayerWriter(context.Background(), layerPath(info, layerID), parentLayerPaths)
	if err != nil {
		return nil, err
	}
	return &FilterLayerWriter{w: w}, nil
}

// GetSharedBaseImages would list the images in the Windows central image store, which
// does not exist on Linux. It returns an error that matches errors.ErrUnsupported.
func GetSharedBaseImages() (imageData string, err error) {
	return wclayer.GetSharedBaseImages(context.Background())
}

// IsTP4 reports whether the host runs Windows Server 2016 Technical Preview 4, whose
// layer APIs differed. It is always false.
//
// Deprecated: Technical Preview 4 was a 2015 pre-release build; no host this project
// supports can be one.
func IsTP4() bool { return false }

// errNotOpened is returned by the methods of a FilterLayerReader or FilterLayerWriter
// that was not created by NewLayerReader or NewLayerWriter.
var errNotOpened = errors.New("hostcompute: layer reader or writer not created by NewLayerReader or NewLayerWriter")

// FilterLayerReader reads the contents of an on-disk layer. NewLayerReader returns one;
// its zero value is not usable.
type FilterLayerReader struct {
	r wclayer.LayerReader
}

var _ LayerReader = (*FilterLayerReader)(nil)

// Next moves to the next file of the layer, parent directories before their
// children, and returns its relative path (such as `Files\Windows`), the size of its
// data and its basic information. A nil fileInfo marks a file that the layer removes
// from its parents; such a file has no backup stream. The rest of the file's metadata
// and its data are read with Read as a Win32 backup stream; an unread stream is skipped.
// Next returns io.EOF after the last file.
func (r *FilterLayerReader) Next() (string, int64, *winfile.BasicInfo, error) {
	if r.r == nil {
		return "", 0, nil, errNotOpened
	}
	return r.r.Next()
}

// Read reads the Win32 backup stream of the current file. It returns io.EOF at the end
// of the stream, and at once for a removed file or before the first Next.
func (r *FilterLayerReader) Read(b []byte) (int, error) {
	if r.r == nil {
		return 0, errNotOpened
	}
	return r.r.Read(b)
}

// Close releases the reader. Stopping before the last file is not an error.
func (r *FilterLayerReader) Close() (err error) {
	if r.r == nil {
		return errNotOpened
	}
	return r.r.Close()
}

// FilterLayerWriter writes the contents of a new layer to the file system.
// NewLayerWriter returns one; its zero value is not usable. After any error the layer
// cannot be completed: Close reports the first error and nothing appears at the
// layer's folder.
type FilterLayerWriter struct {
	w wclayer.LayerWriter
}

var _ LayerWriter = (*FilterLayerWriter)(nil)

// Add adds a file or directory to the layer. name is its layer-relative path, such as
// `Files\Windows\notepad.exe`; fileInfo holds its times and attributes. The rest of
// its metadata (security descriptor, extended attributes, reparse data) and its data
// and alternate data streams follow through Write as a Win32 backup stream;
// winfile.BackupWriter builds one.
//
// On Windows the parent directory must have been added first. Here a missing parent is
// created with default metadata, but ports should keep the Windows order.
func (w *FilterLayerWriter) Add(name string, fileInfo *winfile.BasicInfo) error {
	if w.w == nil {
		return errNotOpened
	}
	return w.w.Add(name, fileInfo)
}

// AddLink adds name as a hard link to target, a file added earlier to this layer or
// present in one of its parents.
func (w *FilterLayerWriter) AddLink(name string, target string) error {
	if w.w == nil {
		return errNotOpened
	}
	return w.w.AddLink(name, target)
}

// Remove records that the file or directory name, present in a parent layer, is
// deleted by this layer. A base layer cannot remove files.
func (w *FilterLayerWriter) Remove(name string) error {
	if w.w == nil {
		return errNotOpened
	}
	return w.w.Remove(name)
}

// Write writes the next part of the current file's Win32 backup stream. The stream may
// arrive in pieces of any size.
func (w *FilterLayerWriter) Write(b []byte) (int, error) {
	if w.w == nil {
		return 0, errNotOpened
	}
	return w.w.Write(b)
}

// Close completes the layer and makes it visible at its folder. Its error must be
// checked: the layer exists only when Close returns nil.
func (w *FilterLayerWriter) Close() (err error) {
	if w.w == nil {
		return errNotOpened
	}
	return w.w.Close()
}
