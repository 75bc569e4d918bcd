package ext4

import (
	"errors"
	"fmt"
)

// Errors returned by Build, wrapped in *Error. Test them with errors.Is.
var (
	// Input errors: the tar stream cannot be turned into an image.

	// ErrInvalidTar means the tar stream is malformed or ends early.
	ErrInvalidTar = errors.New("ext4: invalid tar stream")
	// ErrInsecurePath means an entry or hard-link name leads outside the root ("..").
	ErrInsecurePath = errors.New("ext4: path escapes the image root")
	// ErrNotDir means an entry's parent path is not a directory in the image, for
	// example a symbolic link given earlier (the "a -> /outside" then "a/file" case).
	ErrNotDir = errors.New("ext4: parent is not a directory")
	// ErrLinkTarget means a hard link names a target that is missing or a directory.
	ErrLinkTarget = errors.New("ext4: invalid hard link target")
	// ErrConflict means an entry would replace another in a way the mode does not
	// allow: in compatibility mode, every case compactext4 refuses (a file over a
	// directory, a second copy of a file with data, ...); in both modes, replacing
	// lost+found with a non-directory.
	ErrConflict = errors.New("ext4: conflicting entries")
	// ErrXattr means an extended attribute has an invalid name or a value above
	// 64 KiB, or the attributes of one file do not fit (in compatibility mode: in the
	// inode and one attribute block).
	ErrXattr = errors.New("ext4: extended attributes do not fit")
	// ErrUnsupported means an entry type that has no ext4 equivalent here.
	ErrUnsupported = errors.New("ext4: unsupported entry")

	// Limit errors.

	// ErrTooLarge means the image would exceed the maximum disk size, a file its
	// maximum size, or a directory the link count limit.
	ErrTooLarge = errors.New("ext4: too large")
)

// Error is the error Build returns: the operation, the tar entry it concerns (empty when
// none does) and the byte offset of the entry's header in the tar stream (-1 when
// unknown). Err matches one of the package's error classes, or is an I/O error of the
// output or the context's error.
type Error struct {
	Op     string
	Entry  string
	Offset int64
	Err    error
}

func (e *Error) Error() string {
	switch {
	case e.Entry != "" && e.Offset >= 0:
		return fmt.Sprintf("ext4: %s %q (tar offset %d): %v", e.Op, e.Entry, e.Offset, e.Err)
	case e.Offset >= 0:
		return fmt.Sprintf("ext4: %s (tar offset %d): %v", e.Op, e.Offset, e.Err)
	default:
		return fmt.Sprintf("ext4: %s: %v", e.Op, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }
