package hostcompute

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// Errors of compute systems (containers) and their processes, with hcsshim's names
// and values: the ones that are syscall.Errno values there (HCS and Win32 error
// codes) are the same syscall.Errno values here, so comparisons with == and
// type switches keep working. Containers and processes return them inside a
// *ContainerError or *ProcessError (as hcsshim does), whose Err field is the
// sentinel; errors.Is and the Is* helpers see through those and any other
// wrapping.
var (
	// ErrComputeSystemDoesNotExist: the container being operated on no longer
	// exists. HCS_E_SYSTEM_NOT_FOUND.
	ErrComputeSystemDoesNotExist = syscall.Errno(0xc037010e)
	// ErrElementNotFound: the object being referenced does not exist; for a
	// process it can also mean that the process has already exited.
	// ERROR_NOT_FOUND.
	ErrElementNotFound = syscall.Errno(0x490)
	// ErrProcNotFound: the process cannot be found. ERROR_PROC_NOT_FOUND.
	ErrProcNotFound = syscall.Errno(0x7f)

	// ErrVmcomputeAlreadyStopped: a shutdown or terminate request was made on a
	// container that is already stopped. HCS_E_SYSTEM_ALREADY_STOPPED.
	ErrVmcomputeAlreadyStopped = syscall.Errno(0xc0370110)
	// ErrVmcomputeOperationPending: the operation goes on in the background and
	// has not completed yet (Shutdown and Terminate return it; Wait for the end).
	// HCS_E_OPERATION_PENDING.
	ErrVmcomputeOperationPending = syscall.Errno(0xC0370103)
	// ErrVmcomputeOperationInvalidState: the compute system is not in a state
	// that allows the requested operation. HCS_E_INVALID_STATE.
	ErrVmcomputeOperationInvalidState = syscall.Errno(0xc0370105)
	// ErrInvalidProcessState: the process is not in a state that allows the
	// requested operation (ExitCode of a running process).
	ErrInvalidProcessState = errors.New("the process is in an invalid state for the attempted operation")

	// ErrTimeout: waiting for a notification timed out (WaitTimeout). It has a
	// Timeout method that returns true, as net.Error does.
	ErrTimeout error = &timeoutError{}
	// ErrHandleClose: the handle generating the notification being waited on has
	// been closed. It matches fs.ErrClosed.
	ErrHandleClose = fmt.Errorf("hcsshim: the handle generating this notification has been closed%w", quiet{fs.ErrClosed})
	// ErrInvalidNotificationType: a notification of an unknown type was received.
	ErrInvalidNotificationType = errors.New("hcsshim: invalid notification type")
	// ErrUnexpectedContainerExit: the container exited while another
	// notification was awaited.
	ErrUnexpectedContainerExit = errors.New("unexpected container exit")
	// ErrUnexpectedProcessAbort: communication with the compute service was lost
	// while a notification was awaited. Here: the container's monitor died (the
	// container has been cleaned up).
	ErrUnexpectedProcessAbort = errors.New("lost communication with compute service")
	// ErrUnexpectedValue: the compute service returned a value that cannot be
	// interpreted.
	ErrUnexpectedValue = errors.New("unexpected value returned from hcs")
)

// quiet wraps an error class without adding to the message.
type quiet struct{ error }

func (quiet) Error() string { return "" }

func (q quiet) Unwrap() error { return q.error }

type timeoutError struct{}

func (*timeoutError) Error() string { return "hcsshim: timeout waiting for notification" }

// Timeout reports that the error is a timeout.
func (*timeoutError) Timeout() bool { return true }

// ContainerError is an error encountered during an operation on a Container: Err
// is one of the sentinel errors above where one applies, and ExtraInfo says more.
type ContainerError struct {
	Container *container
	Operation string
	ExtraInfo string
	Err       error
}

func (e *ContainerError) Error() string {
	if e == nil {
		return "<nil>"
	}
	s := "container"
	if e.Container != nil {
		s += " " + e.Container.id
	}
	if e.Operation != "" {
		s += " encountered an error during " + e.Operation
	}
	s += describe(e.Err)
	if e.ExtraInfo != "" {
		s += " (" + e.ExtraInfo + ")"
	}
	return s
}

// Unwrap returns Err.
func (e *ContainerError) Unwrap() error { return e.Err }

// ProcessError is an error encountered during an operation on a Process: Err is
// one of the sentinel errors above where one applies, and ExtraInfo says more.
type ProcessError struct {
	Process   *process
	Operation string
	ExtraInfo string
	Err       error
}

func (e *ProcessError) Error() string {
	if e == nil {
		return "<nil>"
	}
	s := "process"
	if e.Process != nil {
		s = fmt.Sprintf("process %d in container %s", e.Process.p.Pid(), e.Process.c.id)
	}
	if e.Operation != "" {
		s += " encountered an error during " + e.Operation
	}
	s += describe(e.Err)
	if e.ExtraInfo != "" {
		s += " (" + e.ExtraInfo + ")"
	}
	return s
}

// Unwrap returns Err.
func (e *ProcessError) Unwrap() error { return e.Err }

// describe renders err for the error types above; an HCS or Win32 code is
// shown with its hexadecimal value, as on Windows.
func describe(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return ""
	case errors.As(err, &errno) && errno == err:
		return fmt.Sprintf(": %s (0x%x)", errnoText(errno), uint32(errno))
	}
	return ": " + err.Error()
}

// errnoText names the HCS and Win32 codes of this package; Linux's strerror
// would misname them (0x7f is EKEYEXPIRED on Linux).
func errnoText(e syscall.Errno) string {
	switch e {
	case ErrComputeSystemDoesNotExist:
		return "the compute system does not exist"
	case ErrElementNotFound:
		return "element not found"
	case ErrProcNotFound:
		return "the process cannot be found"
	case ErrVmcomputeAlreadyStopped:
		return "the compute system is already stopped"
	case ErrVmcomputeOperationPending:
		return "the operation is pending"
	case ErrVmcomputeOperationInvalidState:
		return "the compute system is in an invalid state for the attempted operation"
	}
	return e.Error()
}

// HcsError is an error returned by a call into the compute service, with the
// call's title and further details.
type HcsError struct {
	title string
	rest  string
	Err   error
}

func (e *HcsError) Error() string {
	s := e.title
	if s != "" {
		s += " "
	}
	s += "failed" + describe(e.Err)
	if e.rest != "" {
		s += " " + e.rest
	}
	return s
}

// Unwrap returns Err.
func (e *HcsError) Unwrap() error { return e.Err }

// IsNotExist reports whether err, or an error it wraps, means that the container,
// process or file being referenced does not exist: ErrComputeSystemDoesNotExist,
// ErrElementNotFound, ErrProcNotFound, or any other error matching fs.ErrNotExist, such
// as a missing layer folder.
//
// As in hcsshim, ErrElementNotFound and ErrProcNotFound can also mean that a process
// has already exited, so IsAlreadyStopped is true for them as well.
func IsNotExist(err error) bool {
	return errors.Is(err, ErrComputeSystemDoesNotExist) ||
		errors.Is(err, ErrElementNotFound) ||
		errors.Is(err, ErrProcNotFound) ||
		errors.Is(err, fs.ErrNotExist)
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
