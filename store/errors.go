package store

import (
	"errors"
	"fmt"
	"io/fs"
)

// Error classes, tested with errors.Is. They are the classes of containerd's
// snapshotter contract; each also matches the standard error of the same meaning
// where there is one, so a caller that knows only io/fs (or errors.ErrUnsupported)
// can test them too.
var (
	// ErrNotFound: no layer has the key (or the parent named does not exist).
	// Matches fs.ErrNotExist.
	ErrNotFound = classError{"store: not found", fs.ErrNotExist}

	// ErrAlreadyExists: a layer already has the key. Matches fs.ErrExist.
	ErrAlreadyExists = classError{"store: already exists", fs.ErrExist}

	// ErrFailedPrecondition: the layer is not in a state that allows the
	// operation: committing a view or a committed layer, removing a layer that
	// still has children, using an active layer as a parent, Mounts of a
	// committed layer.
	ErrFailedPrecondition = classError{"store: failed precondition", nil}

	// ErrInvalidArgument: a malformed key, filter or field path, or an update of
	// a field that cannot change. Matches fs.ErrInvalid.
	ErrInvalidArgument = classError{"store: invalid argument", fs.ErrInvalid}

	// ErrUnsupported: the operation is not supported for the layer's format
	// (the message says what is missing). Matches errors.ErrUnsupported.
	ErrUnsupported = classError{"store: unsupported", errors.ErrUnsupported}

	// ErrClosed: the Store was closed. Matches fs.ErrClosed.
	ErrClosed = classError{"store: closed", fs.ErrClosed}

	// ErrLocked: another process held the store's lock for longer than the
	// lock timeout (WithLockTimeout).
	ErrLocked = classError{"store: locked by another process", nil}

	// ErrCorrupt: a metadata record cannot be decoded, or the store's files
	// disagree with its records in a way only Repair mends.
	ErrCorrupt = classError{"store: corrupt", nil}
)

// classError is a sentinel that also matches a standard error.
type classError struct {
	msg string
	std error
}

func (e classError) Error() string { return e.msg }

func (e classError) Is(target error) bool { return e.std != nil && target == e.std }

// Error records a failed store operation: the operation, the key it concerned
// and the cause, which wraps one of the classes above (or a system error).
type Error struct {
	Op  string // "prepare", "commit", "import", ...
	Key string // the layer key, if any
	Err error
}

func (e *Error) Error() string {
	s := "store: " + e.Op
	if e.Key != "" {
		s += " " + fmt.Sprintf("%q", e.Key)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func opErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) && se.Op == op && se.Key == key {
		return err
	}
	return &Error{Op: op, Key: key, Err: err}
}

// classf returns an error of class c with a message.
func classf(c error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", c, fmt.Sprintf(format, args...))
}
