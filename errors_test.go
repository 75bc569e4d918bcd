package hostcompute

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestErrorHelpers(t *testing.T) {
	_, statErr := os.Stat(filepath.Join(t.TempDir(), "missing"))
	wrap := func(err error) error { return fmt.Errorf("container c1: %w", err) }
	tests := []struct {
		name                                string
		err                                 error
		notExist, stopped, pending, timeout bool
	}{
		{name: "nil"},
		{name: "unrelated", err: errors.New("boom")},
		{name: "ErrComputeSystemDoesNotExist", err: ErrComputeSystemDoesNotExist, notExist: true},
		{name: "ErrElementNotFound", err: ErrElementNotFound, notExist: true, stopped: true},
		{name: "ErrProcNotFound", err: ErrProcNotFound, notExist: true, stopped: true},
		{name: "wrapped ErrElementNotFound", err: wrap(ErrElementNotFound), notExist: true, stopped: true},
		{name: "ErrVmcomputeAlreadyStopped", err: ErrVmcomputeAlreadyStopped, stopped: true},
		{name: "wrapped ErrVmcomputeAlreadyStopped", err: wrap(ErrVmcomputeAlreadyStopped), stopped: true},
		{name: "ErrVmcomputeOperationPending", err: ErrVmcomputeOperationPending, pending: true},
		{name: "wrapped ErrVmcomputeOperationPending", err: wrap(ErrVmcomputeOperationPending), pending: true},
		{name: "ErrVmcomputeOperationInvalidState", err: ErrVmcomputeOperationInvalidState},
		{name: "ErrTimeout", err: ErrTimeout, timeout: true},
		{name: "wrapped ErrTimeout", err: wrap(ErrTimeout), timeout: true},
		{name: "joined with ErrTimeout last", err: errors.Join(ErrElementNotFound, ErrTimeout), notExist: true, stopped: true, timeout: true},
		{name: "context.DeadlineExceeded", err: wrap(context.DeadlineExceeded), timeout: true},
		{name: "os.ErrDeadlineExceeded", err: os.ErrDeadlineExceeded, timeout: true},
		{name: "context.Canceled", err: context.Canceled},
		{name: "missing file", err: statErr, notExist: true},
		{name: "ErrHandleClose", err: ErrHandleClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks := []struct {
				fn   string
				got  bool
				want bool
			}{
				{"IsNotExist", IsNotExist(tt.err), tt.notExist},
				{"IsAlreadyStopped", IsAlreadyStopped(tt.err), tt.stopped},
				{"IsPending", IsPending(tt.err), tt.pending},
				{"IsTimeout", IsTimeout(tt.err), tt.timeout},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s(%v) = %v, want %v", c.fn, tt.err, c.got, c.want)
				}
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	if !errors.Is(ErrHandleClose, fs.ErrClosed) {
		t.Error("ErrHandleClose does not match fs.ErrClosed")
	}
	// hcsshim's values, and their type.
	for _, tt := range []struct {
		err  syscall.Errno
		want uint32
	}{
		{ErrComputeSystemDoesNotExist, 0xc037010e}, {ErrElementNotFound, 0x490}, {ErrProcNotFound, 0x7f},
		{ErrVmcomputeAlreadyStopped, 0xc0370110}, {ErrVmcomputeOperationPending, 0xc0370103},
		{ErrVmcomputeOperationInvalidState, 0xc0370105},
	} {
		if uint32(tt.err) != tt.want {
			t.Errorf("%v = %#x, want %#x", tt.err, uint32(tt.err), tt.want)
		}
	}
	for _, err := range []error{ErrVmcomputeAlreadyStopped, ErrVmcomputeOperationPending, ErrTimeout, ErrUnexpectedValue} {
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%v matches fs.ErrNotExist", err)
		}
	}
	all := []error{
		ErrComputeSystemDoesNotExist, ErrElementNotFound, ErrProcNotFound,
		ErrVmcomputeAlreadyStopped, ErrVmcomputeOperationPending, ErrVmcomputeOperationInvalidState, ErrInvalidProcessState,
		ErrTimeout, ErrHandleClose, ErrInvalidNotificationType, ErrUnexpectedContainerExit, ErrUnexpectedProcessAbort,
		ErrUnexpectedValue,
	}
	for _, err := range all {
		for _, other := range all {
			if other != err && errors.Is(err, other) {
				t.Errorf("%v matches %v", err, other)
			}
		}
	}
	// Wrapped in the compute errors, the sentinel is Err and the helpers see it.
	ce := &ContainerError{Operation: "Start", Err: ErrComputeSystemDoesNotExist, ExtraInfo: "gone"}
	if !IsNotExist(ce) || IsAlreadyStopped(ce) || ce.Err != ErrComputeSystemDoesNotExist {
		t.Errorf("ContainerError helpers wrong: %v", ce)
	}
	if !strings.Contains(ce.Error(), "0xc037010e") || !strings.Contains(ce.Error(), "Start") {
		t.Errorf("ContainerError message %q lacks the code or operation", ce.Error())
	}
	pe := &ProcessError{Operation: "Kill", Err: ErrElementNotFound}
	if !IsAlreadyStopped(pe) || !IsNotExist(pe) {
		t.Errorf("ProcessError helpers wrong: %v", pe)
	}
	if !IsTimeout(&ContainerError{Err: ErrTimeout}) || !IsPending(&ContainerError{Err: ErrVmcomputeOperationPending}) {
		t.Error("IsTimeout or IsPending does not see through ContainerError")
	}
}
