package winfile

import (
	"errors"
	"fmt"
)

// Errors returned by this package, grouped by when they occur.
var (
	// ErrInvalidFormat is the class of every *FormatError: input that does not
	// follow the format, or a value that cannot be encoded in it. Test for it
	// with errors.Is.
	ErrInvalidFormat = errors.New("winfile: invalid format")

	// ErrWriteTooLong is returned by [BackupWriter.Write] for bytes beyond the
	// Size declared in the current stream header.
	ErrWriteTooLong = errors.New("winfile: write beyond declared stream size")

	// ErrWriteTooShort is returned by [BackupWriter.WriteHeader] and
	// [BackupWriter.Close] when the previous stream received fewer payload
	// bytes than its header declared.
	ErrWriteTooShort = errors.New("winfile: stream payload shorter than declared size")

	// ErrWriteAfterClose is returned by [BackupWriter] methods called after
	// [BackupWriter.Close].
	ErrWriteAfterClose = errors.New("winfile: write after close")
)

// FormatError reports input that violates one of the formats of this package,
// or a value that cannot be encoded. Every parser in the package returns it.
//
// It matches [ErrInvalidFormat] with errors.Is. When the input ended too early
// Err is io.ErrUnexpectedEOF, so errors.Is(err, io.ErrUnexpectedEOF) holds too.
type FormatError struct {
	// Structure names the part that is wrong, for example
	// "backup stream header" or "security descriptor DACL".
	Structure string
	// Offset is the byte offset of the problem in the input being parsed
	// (counted from the start of the reader or buffer), or in the output being
	// built when an encoder rejects a value.
	Offset int64
	// Reason says what is wrong.
	Reason string
	// Err is an underlying cause, such as io.ErrUnexpectedEOF, or nil.
	Err error
}

// Error formats the error as "winfile: <structure> at offset <n>: <reason>".
func (e *FormatError) Error() string {
	s := fmt.Sprintf("winfile: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause, which may be nil.
func (e *FormatError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidFormat].
func (e *FormatError) Is(target error) bool { return target == ErrInvalidFormat }

func formatErr(structure string, off int64, format string, args ...any) *FormatError {
	return &FormatError{Structure: structure, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
