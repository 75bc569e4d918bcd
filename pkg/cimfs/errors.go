package cimfs

import (
	"errors"
	"fmt"
	"io/fs"
)

var (
	// ErrInvalidFormat is the class of every *FormatError.
	ErrInvalidFormat = errors.New("cimfs: invalid format")
	// ErrNotFound: no file at the path, or no alternate stream with the name.
	// Matches fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("cimfs: file not found: %w", fs.ErrNotExist)
	// ErrNotDir: a path component other than the last is not a directory.
	ErrNotDir = errors.New("cimfs: not a directory")
	// ErrIsDir: the operation needs a file and the path names a directory.
	ErrIsDir = errors.New("cimfs: is a directory")
	// ErrInvalidName: a name the format cannot store (empty, too long, with a
	// separator, colon or NUL, or not valid UTF-16).
	ErrInvalidName = errors.New("cimfs: invalid name")
	// ErrExists: the image, or a name given to the writer, already exists.
	// Matches fs.ErrExist.
	ErrExists = fmt.Errorf("cimfs: already exists: %w", fs.ErrExist)
	// ErrWriter: the writer was used out of order (write without a current file,
	// wrong amount of data, use after Close).
	ErrWriter = errors.New("cimfs: writer misuse")
	// ErrTooLarge: a value exceeds what the format can represent.
	ErrTooLarge = errors.New("cimfs: value too large for the format")
)

// FormatError reports a structure of a CIM that breaks the format: File is the file
// of the image set (the .cim file or a region or object ID file), Object names the
// structure (for example "file record 17" or "link table of file 3"), Offset is the
// byte offset in File. It matches ErrInvalidFormat with errors.Is.
type FormatError struct {
	File   string
	Object string
	Offset int64
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("cimfs: %s: %s at offset %d: %s", e.File, e.Object, e.Offset, e.Reason)
}

// Is reports whether target is ErrInvalidFormat.
func (e *FormatError) Is(target error) bool { return target == ErrInvalidFormat }

func formatErr(file, object string, off int64, format string, args ...any) *FormatError {
	return &FormatError{File: file, Object: object, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// PathError is an operation on a path inside an image that failed, in the manner of
// fs.PathError.
type PathError struct {
	Op   string
	Path string
	Err  error
}

func (e *PathError) Error() string { return "cimfs: " + e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }
