package ocilayer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
)

// Errors returned by Apply and Diff, always inside an *EntryError that names the
// entry. Test them with errors.Is.
var (
	// Hostile or malformed input.

	// ErrInsecurePath: an entry name, hard-link target or whiteout names a path that
	// leaves the root after cleaning (for example "../x" or ".wh..."). Matches
	// tar.ErrInsecurePath.
	ErrInsecurePath = fmt.Errorf("ocilayer: insecure path: %w", tar.ErrInsecurePath)
	// ErrInvalidEntry: an entry cannot be applied as written: an empty name or one
	// holding NUL, a hard link to a directory or to a missing target, a directory
	// entry whose name is a whiteout, and the like.
	ErrInvalidEntry = errors.New("ocilayer: invalid entry")
	// ErrNotDir: an entry would be written below a symlink, file or device the
	// same layer created. Matches ErrInvalidEntry.
	ErrNotDir = fmt.Errorf("%w: parent is not a directory", ErrInvalidEntry)
	// ErrLinkTarget: a hard link names a directory, the root, or (in a layer read
	// on its own) a name that is not an earlier entry. Matches ErrInvalidEntry.
	ErrLinkTarget = fmt.Errorf("%w: bad hard link target", ErrInvalidEntry)

	// ErrTooLarge: a regular file is larger than the maximum file size
	// (DefaultMaxFileSize unless WithMaxFileSize says otherwise).
	ErrTooLarge = errors.New("ocilayer: file too large")
	// ErrExist: ApplyNew was given a target that exists and is not an empty
	// directory. Matches fs.ErrExist.
	ErrExist = fmt.Errorf("ocilayer: target exists: %w", fs.ErrExist)

	// Things this host or this package cannot do.

	// ErrUnsupported: an entry type this package does not handle (tar continuation
	// or sparse entries, sockets), a device that may not be created here, or an
	// overlayfs feature Diff cannot translate (metacopy, redirect_dir). Matches
	// errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("ocilayer: unsupported: %w", errors.ErrUnsupported)
)

// EntryError describes a failure tied to one entry of a layer.
type EntryError struct {
	// Entry is the entry name as found in the tar stream (Apply) or the path
	// relative to the upper directory (Diff).
	Entry string
	// Offset is the position in the tar stream of the entry's first header
	// block, PAX and long-name headers included (Apply); -1 when unknown, as
	// for Diff and for directory times set after the last entry.
	Offset int64
	// Op is the operation that failed, such as "mknod" or "open".
	Op string
	// Err is the cause; one of the sentinels above or a system error.
	Err error
}

func (e *EntryError) Error() string {
	op := ""
	if e.Op != "" {
		op = e.Op + " "
	}
	if e.Entry == "" {
		return fmt.Sprintf("ocilayer: %sat offset %d: %v", op, e.Offset, e.Err)
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("ocilayer: %sentry %q at offset %d: %v", op, e.Entry, e.Offset, e.Err)
	}
	return fmt.Sprintf("ocilayer: %sentry %q: %v", op, e.Entry, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }
