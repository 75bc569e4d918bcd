package winlayer

import (
	"errors"
	"fmt"
	"io/fs"
)

// Errors returned by this package, wrapped in an *EntryError or *LayerError with the
// layer and entry they concern. Test them with errors.Is.
var (
	// Errors in entry names.

	// ErrInvalidName: a name component is empty, ".", "..", or not a valid Windows file
	// name (reserved characters <>:"|?*, control characters, a trailing dot or space, or
	// a reserved device name such as CON or LPT1).
	ErrInvalidName = errors.New("winlayer: invalid Windows file name")
	// ErrInsecurePath: a name is absolute or climbs out of the layer with "..".
	ErrInsecurePath = errors.New("winlayer: path escapes the layer")
	// ErrOutsideLayer: a name is not under Files/, Hives/ or UtilityVM/.
	ErrOutsideLayer = errors.New("winlayer: entry outside Files/, Hives/ and UtilityVM/")
	// ErrCaseCollision: two names differ only in case; Windows cannot hold both.
	ErrCaseCollision = errors.New("winlayer: name differs only in case from an existing entry")
	// ErrDuplicate: a name is given twice (Windows creates every name of a layer once,
	// so the second would fail there), or removed after this layer added it.
	ErrDuplicate = errors.New("winlayer: name given twice")
	// ErrParentNotDirectory: an entry would be created below a file or a reparse point
	// (a symbolic link or mount point), which could lead outside the layer.
	ErrParentNotDirectory = errors.New("winlayer: parent is not a directory")

	// Errors in entry order and content.

	// ErrNoEntry: Write, WriteAt or AddStream was called before Add.
	ErrNoEntry = errors.New("winlayer: no current entry")
	// ErrSizeMismatch: the data written differs from the size declared.
	ErrSizeMismatch = errors.New("winlayer: data size differs from the declared size")
	// ErrTooLarge: a declared size is negative or cannot fit on the target filesystem.
	ErrTooLarge = errors.New("winlayer: declared size too large")
	// ErrNotSupported: the entry asks for something this layer form cannot hold.
	ErrNotSupported = errors.New("winlayer: not supported")
	// ErrLinkTarget: a hard link names a target that is not in this layer or its parents,
	// or that is a directory.
	ErrLinkTarget = errors.New("winlayer: hard link target not found")
	// ErrBaseLayerWhiteout: a base layer (one without parents) cannot remove files.
	ErrBaseLayerWhiteout = errors.New("winlayer: a base layer cannot have whiteouts")
	// ErrClosed: the writer or reader was already closed or aborted.
	ErrClosed = errors.New("winlayer: closed")

	// Errors about whole layers.

	// ErrLayerExists: the destination folder exists and is not empty. Matches fs.ErrExist.
	ErrLayerExists = fmt.Errorf("winlayer: layer already exists: %w", fs.ErrExist)
	// ErrNotLayer: a folder is not a layer written by this package. Matches fs.ErrNotExist.
	ErrNotLayer = fmt.Errorf("winlayer: not a layer folder: %w", fs.ErrNotExist)
	// ErrParentNotFound: a parent layer given to NewWriter does not exist or is not a
	// directory. Matches fs.ErrNotExist.
	ErrParentNotFound = fmt.Errorf("winlayer: parent layer not found: %w", fs.ErrNotExist)
	// ErrCorrupt: the layer's metadata cannot be decoded.
	ErrCorrupt = errors.New("winlayer: corrupt layer metadata")
)

// EntryError describes a failure tied to one entry of a layer.
type EntryError struct {
	Layer string // layer folder
	Entry string // layer-relative name, slash separated
	Op    string // "add", "write", "link", "remove", "stream", "read"
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("%s %s in layer %s: %v", e.Op, e.Entry, e.Layer, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// LayerError describes a failure of a whole-layer operation.
type LayerError struct {
	Layer string
	Op    string // "create", "commit", "open", "destroy"
	Err   error
}

func (e *LayerError) Error() string { return fmt.Sprintf("%s layer %s: %v", e.Op, e.Layer, e.Err) }

func (e *LayerError) Unwrap() error { return e.Err }
