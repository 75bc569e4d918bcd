package dmverity

import (
	"errors"
	"fmt"
)

// Errors returned by this package, grouped by when they occur.
var (
	// ErrInvalidParams: Params or a size that cannot describe a tree (a data size
	// that is not a positive multiple of 4096, a salt longer than 256 bytes, options
	// that contradict each other). Nothing has been written.
	ErrInvalidParams = errors.New("dmverity: invalid parameters")
	// ErrShortData: the data ends before the size the caller gave. Nothing has been
	// written when Append reports it, since Append checks the file size first.
	ErrShortData = errors.New("dmverity: data shorter than the given size")

	// ErrInvalidFormat: a superblock or tree that does not follow the format.
	// Every *FormatError matches it.
	ErrInvalidFormat = errors.New("dmverity: invalid format")
	// ErrUnsupported: a valid superblock with parameters this package does not
	// hash with (another algorithm, hash type 0, block sizes other than 4096).
	// Matches errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("dmverity: unsupported: %w", errors.ErrUnsupported)

	// ErrMismatch: Verify found a data or hash block whose digest disagrees with
	// the tree, or a tree whose root is not the expected root hash. Every
	// *VerifyError matches it.
	ErrMismatch = errors.New("dmverity: verification failed")
)

// FormatError reports a field of a dm-verity superblock (or the tree) that does
// not follow the format.
type FormatError struct {
	// Structure names the structure and field: "superblock signature",
	// "superblock data_block_size", "hash tree".
	Structure string
	// Offset is the byte offset in the file (or buffer) of that field.
	Offset int64
	// Err describes the problem; it may wrap ErrUnsupported or an I/O error.
	Err error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("dmverity: %s at offset %d: %v", e.Structure, e.Offset, e.Err)
}

// Unwrap returns the underlying error.
func (e *FormatError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidFormat, which every FormatError matches.
func (e *FormatError) Is(target error) bool { return target == ErrInvalidFormat }

func formatErrf(structure string, off int64, format string, args ...any) error {
	return &FormatError{Structure: structure, Offset: off, Err: fmt.Errorf(format, args...)}
}

// VerifyError reports the first block Verify found that disagrees with the tree.
type VerifyError struct {
	// DataBlock is the index of the data block (4096-byte unit from the start of
	// the data) whose digest differs from the one stored in level 0, or -1 when the
	// data agrees with level 0 and a higher hash block (or the root) is wrong.
	DataBlock int64
	// Level is the tree level holding the disagreeing hash block, 0 being the level
	// that hashes the data; -1 for a root hash mismatch.
	Level int
	// HashOffset is the byte offset, in the hash file, of the stored hash block
	// that disagrees (-1 for a root hash mismatch).
	HashOffset int64
}

func (e *VerifyError) Error() string {
	switch {
	case e.Level < 0:
		return "dmverity: verification failed: the tree's root hash is not the expected root hash"
	case e.DataBlock >= 0:
		return fmt.Sprintf("dmverity: verification failed: data block %d (bytes %d to %d) does not match its digest in the hash block at offset %d",
			e.DataBlock, e.DataBlock*BlockSize, (e.DataBlock+1)*BlockSize-1, e.HashOffset)
	default:
		return fmt.Sprintf("dmverity: verification failed: hash block at offset %d (level %d) does not match the level below it",
			e.HashOffset, e.Level)
	}
}

// Is reports whether target is ErrMismatch, which every VerifyError matches.
func (e *VerifyError) Is(target error) bool { return target == ErrMismatch }
