package hns

import (
	"errors"
	"fmt"
	"io/fs"
)

// Errors of the network service. Callers test them with errors.Is.
var (
	// ErrNotFound: no network or endpoint has the given ID or name. Matches
	// fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("hns: not found: %w", fs.ErrNotExist)
	// ErrExists: a network or endpoint with that name already exists. Matches
	// fs.ErrExist.
	ErrExists = fmt.Errorf("hns: already exists: %w", fs.ErrExist)
	// ErrInUse: a network still has endpoints.
	ErrInUse = errors.New("hns: network has endpoints")
	// ErrInvalid: a request is malformed (bad JSON, a bad address, a missing field).
	ErrInvalid = errors.New("hns: invalid request")
	// ErrUnsupported: the request asks for something Linux has no mapping for here (a
	// network type, a policy, a host adapter). Matches errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("hns: not supported on Linux: %w", errors.ErrUnsupported)
)

// invalidf returns an error matching ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// unsupportedf returns an error matching ErrUnsupported (and errors.ErrUnsupported).
func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// Error is a failed operation on a network or endpoint.
type Error struct {
	Op  string // "create network", "delete endpoint", ...
	ID  string // the network's or endpoint's ID or name, when known
	Err error
}

func (e *Error) Error() string {
	if e.ID == "" {
		return "hns: " + e.Op + ": " + e.Err.Error()
	}
	return "hns: " + e.Op + " " + e.ID + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }
