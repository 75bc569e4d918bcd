package vhd

import (
	"errors"
	"fmt"
	"io/fs"
)

// Errors returned by this package. Errors about file contents are returned inside a
// [*FormatError], which also matches ErrInvalidFormat.
var (
	// ErrInvalidFormat: the file is not a valid VHD, or one of its structures is
	// damaged. Every *FormatError matches it.
	ErrInvalidFormat = errors.New("vhd: invalid format")
	// ErrChecksum: a footer or dynamic disk header has a wrong checksum.
	ErrChecksum = errors.New("vhd: checksum mismatch")
	// ErrTruncated: the file ends before a structure the format says is there.
	ErrTruncated = errors.New("vhd: file truncated")
	// ErrUnsupported: a valid feature this package does not implement (an unknown
	// disk type, a version other than 1.0). Matches errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("vhd: unsupported: %w", errors.ErrUnsupported)

	// ErrParentNotFound: no parent locator of a differencing disk leads to an
	// existing file. Matches fs.ErrNotExist.
	ErrParentNotFound = fmt.Errorf("vhd: parent disk not found: %w", fs.ErrNotExist)
	// ErrParentMismatch: the parent found is not the one the differencing disk
	// records: another unique ID (VHD) or DataWriteGuid (VHDX), format, size or
	// sector size.
	ErrParentMismatch = errors.New("vhd: parent unique ID mismatch")

	// ErrReadOnly: a write to a disk opened read-only.
	ErrReadOnly = errors.New("vhd: disk opened read-only")
	// ErrOutOfRange: a read or write beyond the virtual size.
	ErrOutOfRange = errors.New("vhd: offset beyond the virtual disk size")
	// ErrInvalidOptions: CreateOptions that cannot describe a disk, or a size
	// that is not a positive multiple of the sector size.
	ErrInvalidOptions = errors.New("vhd: invalid create options")

	// ErrLogReplayNeeded: a VHDX whose log holds updates that were not applied
	// (its writer did not close it cleanly) was opened read-only. Opening it for
	// writing replays the log; a read-only open never modifies the file.
	ErrLogReplayNeeded = errors.New("vhd: VHDX log needs to be replayed; open the disk for writing (or run qemu-img check -r all) first")
	// ErrShrinkUnsafe: Resize to a smaller size would drop allocated or non-zero
	// data past the new end.
	ErrShrinkUnsafe = errors.New("vhd: shrinking would discard data")
)

// FormatError reports a structure of a VHD file that does not follow the format.
type FormatError struct {
	// Structure names the structure: "footer", "dynamic header", "BAT",
	// "parent locator 3", "block 17", ...
	Structure string
	// Offset is the byte offset in the file of the structure or of the bad field.
	Offset int64
	// Err describes the problem; it may wrap ErrChecksum, ErrTruncated,
	// ErrUnsupported or an I/O error.
	Err error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("vhd: %s at offset %d: %v", e.Structure, e.Offset, e.Err)
}

// Unwrap returns the underlying error.
func (e *FormatError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidFormat, which every FormatError matches.
func (e *FormatError) Is(target error) bool { return target == ErrInvalidFormat }

func formatErr(structure string, off int64, err error) error {
	return &FormatError{Structure: structure, Offset: off, Err: err}
}

func formatErrf(structure string, off int64, format string, args ...any) error {
	return &FormatError{Structure: structure, Offset: off, Err: fmt.Errorf(format, args...)}
}
