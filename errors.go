package hostcompute

import (
	"errors"
	"io/fs"
)

// Errors of compute systems (containers) and their processes, with hcsshim's names.
// No function of this package returns them yet: containers and processes will. They
// are kept here so that code written against hcsshim compiles and its checks keep
// their meaning.
//
// On Windows several of them are syscall.Errno values holding HCS or Win32 error codes;
// here they are plain error values. Comparing with == still works on an error returned
// as is; errors.Is, and the IsNotExist, IsAlreadyStopped, IsPending and IsTimeout
// helpers, also see through wrapping.
var (
	// Something that does not exist. These match fs.ErrNotExist.

	// ErrComputeSystemDoesNotExist: the container being operated on no longer exists.
	// Matches fs.ErrNotExist. (HCS_E_SYSTEM_NOT_FOUND, 0xC037010E, on Windows.)
	ErrComputeSystemDoesNotExist error = &hcsError{msg: "hostcompute: the compute system does not exist", class: fs.ErrNotExist}
	// ErrElementNotFound: the object being referenced does not exist; for a process it
	// can also mean that the process has already exited. Matches fs.ErrNotExist.
	// (ERROR_NOT_FOUND, 0x490, on Windows.)
	ErrElementNotFound error = &hcsError{msg: "hostcompute: element not found", class: fs.ErrNotExist}
	// ErrProcNotFound: the process cannot be found. Matches fs.ErrNotExist.
	// (ERROR_PROC_NOT_FOUND, 0x7F, on Windows.)
	ErrProcNotFound error = &hcsError{msg: "hostcompute: process not found", class: fs.ErrNotExist}

	// The state of a compute system or process.

	// ErrVmcomputeAlreadyStopped: a shutdown or terminate request was made on a
	// container that is already stopped. (HCS_E_SYSTEM_ALREADY_STOPPED, 0xC0370110, on
	// Windows.)
	ErrVmcomputeAlreadyStopped error = &hcsError{msg: "hostcompute: the compute system is already stopped"}
	// ErrVmcomputeOperationPending: the operation goes on in the background and has not
	// completed yet. (HCS_E_OPERATION_PENDING, 0xC0370103, on Windows.)
	ErrVmcomputeOperationPending error = &hcsError{msg: "hostcompute: the operation is pending"}
	// ErrVmcomputeOperationInvalidState: the compute system is not in a state that
	// allows the requested operation. (HCS_E_INVALID_STATE, 0xC0370105, on Windows.)
	ErrVmcomputeOperationInvalidState error = &hcsError{msg: "hostcompute: the compute system is in an invalid state for the attempted operation"}
	// ErrInvalidProcessState: the process is not in a state that allows the requested
	// operation.
	ErrInvalidProcessState = errors.New("hostcompute: the process is in an invalid state for the attempted operation")

	// Waiting for a notification from the compute service.

	// ErrTimeout: waiting for a notification timed out. It has a Timeout method that
	// returns true, as net.Error does.
	ErrTimeout error = &hcsError{msg: "hostcompute: timeout waiting for notification", timeout: true}
	// ErrHandleClose: the handle generating the notification being waited on has been
	// closed. It matches fs.ErrClosed.
	ErrHandleClose error = &hcsError{msg: "hostcompute: the handle generating this notification has been closed", class: fs.ErrClosed}
	// ErrInvalidNotificationType: a notification of an unknown type was received.
	ErrInvalidNotificationType = errors.New("hostcompute: invalid notification type")
	// ErrUnexpectedContainerExit: the container exited while another notification
	// was awaited.
	ErrUnexpectedContainerExit = errors.New("hostcompute: unexpected container exit")
	// ErrUnexpectedProcessAbort: communication with the compute service was lost while
	// a notification was awaited.
	ErrUnexpectedProcessAbort = errors.New("hostcompute: lost communication with compute service")

	// Answers of the compute service.

	// ErrUnexpectedValue: the compute service returned a value that cannot be
	// interpreted.
	ErrUnexpectedValue = errors.New("hostcompute: unexpected value returned from the compute service")
)

// hcsError is a sentinel error that can also match a standard error class with
// errors.Is, and report itself as a timeout.
type hcsError struct {
	msg     string
	class   error // matched by Is when not nil
	timeout bool  // returned by Timeout
}

func (e *hcsError) Error() string { return e.msg }

// Is reports whether target is the standard class e belongs to.
func (e *hcsError) Is(target error) bool { return e.class != nil && target == e.class }

// Timeout reports whether e is a timeout.
func (e *hcsError) Timeout() bool { return e.timeout }

// IsNotExist reports whether err, or an error it wraps, means that the container,
// process or file being referenced does not exist: ErrComputeSystemDoesNotExist,
// ErrElementNotFound, ErrProcNotFound, or any other error matching fs.ErrNotExist, such
// as a missing layer folder.
//
// As in hcsshim, ErrElementNotFound and ErrProcNotFound can also mean that a process
// has already exited, so IsAlreadyStopped is true for them as well.
func IsNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist)
}

// IsAlreadyStopped reports whether err, or an error it wraps, means that the container
// or process is already stopped: ErrVmcomputeAlreadyStopped, ErrElementNotFound or
// ErrProcNotFound.
func IsAlreadyStopped(err error) bool {
	return errors.Is(err, ErrVmcomputeAlreadyStopped) ||
		errors.Is(err, ErrElementNotFound) ||
		errors.Is(err, ErrProcNotFound)
}

// IsPending reports whether err, or an error it wraps, is ErrVmcomputeOperationPending:
// the operation goes on in the background.
func IsPending(err error) bool {
	return errors.Is(err, ErrVmcomputeOperationPending)
}

// IsTimeout reports whether err, or an error it wraps, is a timeout: ErrTimeout, or
// any error with a Timeout method that returns true, such as a net.Error that timed
// out, os.ErrDeadlineExceeded or context.DeadlineExceeded.
func IsTimeout(err error) bool {
	if errors.Is(err, ErrTimeout) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
