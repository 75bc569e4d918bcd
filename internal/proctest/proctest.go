// Package proctest lets tests kill a process and wait until it is really gone.
//
// A process sent SIGKILL keeps its files (flock locks, /dev/fuse, loop device
// handles) until its last thread has exited, which on a loaded machine can be
// long after kill(2) returned. Worse, /proc/PID/stat of a multi-threaded
// process shows the group leader as a zombie while other threads are still
// tearing down, so polling that state is not enough. A pidfd becomes readable
// only once the whole thread group has exited, after its files are closed;
// signalling through the same pidfd cannot hit a recycled PID.
package proctest

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Timeout is a deadline generous enough for a loaded two-CPU machine: a
// process that is not gone by then is reported, not waited on forever.
const Timeout = 60 * time.Second

// KillWait sends SIGKILL to pid and waits, up to timeout, until it has exited.
// A pid that no longer exists is not an error.
func KillWait(pid int, timeout time.Duration) error {
	return signalWait(pid, unix.SIGKILL, timeout)
}

// WaitExit waits, up to timeout, until pid has exited, without signalling it.
// A pid that no longer exists is not an error.
func WaitExit(pid int, timeout time.Duration) error {
	return signalWait(pid, 0, timeout)
}

func signalWait(pid int, sig unix.Signal, timeout time.Duration) error {
	if pid <= 0 {
		return fmt.Errorf("proctest: invalid pid %d", pid)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // gone, and reaped
	}
	if err != nil {
		return fmt.Errorf("proctest: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if sig != 0 {
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("proctest: signal %v to %d: %w", sig, pid, err)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("proctest: poll pidfd of %d: %w", pid, err)
		case n > 0:
			return nil
		case left == 0:
			return fmt.Errorf("proctest: process %d still running after %v", pid, timeout)
		}
	}
}
