package hostcompute

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hostcompute/hostcompute/compute"
	"golang.org/x/sys/unix"
)

// Process represents a running or exited process.
type Process interface {
	// Pid returns the process ID of the process within the container.
	Pid() int
	// Kill signals the process to terminate but does not wait for it to finish terminating.
	Kill() error
	// Wait waits for the process to exit.
	Wait() error
	// WaitTimeout waits for the process to exit or the duration to elapse. It returns
	// false if timeout occurs.
	WaitTimeout(time.Duration) error
	// ExitCode returns the exit code of the process. The process must have
	// already terminated.
	ExitCode() (int, error)
	// ResizeConsole resizes the console of the process.
	ResizeConsole(width, height uint16) error
	// Stdio returns the stdin, stdout, and stderr pipes, respectively. Closing
	// these pipes does not close the underlying pipes; it should be possible to
	// call this multiple times to get multiple interfaces.
	Stdio() (io.WriteCloser, io.ReadCloser, io.ReadCloser, error)
	// CloseStdin closes the write side of the stdin pipe so that the process is
	// notified on the read side that there is no more data in stdin.
	CloseStdin() error
	// Close cleans up any state associated with the process but does not kill
	// or wait on it.
	Close() error
}

// process is a Process. Its Pid is the process's ID in the host's PID
// namespace (runc's pid file), which OpenProcess takes.
type process struct {
	c *container
	p *compute.Process

	mu                    sync.Mutex
	stdin, stdout, stderr *os.File // this handle's ends (the console master twice with a terminal)
	exit                  *compute.Exit
	closed                bool
}

func (p *process) error(op string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case errors.Is(err, compute.ErrNotFound), errors.Is(err, compute.ErrStopped):
		// As in hcsshim: not found, or exited already.
		sentinel = ErrElementNotFound
	case errors.Is(err, compute.ErrTimeout):
		sentinel = ErrTimeout
	case errors.Is(err, compute.ErrMonitorLost):
		sentinel = ErrUnexpectedProcessAbort
	case errors.Is(err, compute.ErrInvalidState):
		sentinel = ErrInvalidProcessState
	}
	if sentinel == nil {
		return &ProcessError{Process: p, Operation: op, Err: err}
	}
	return &ProcessError{Process: p, Operation: op, Err: sentinel, ExtraInfo: err.Error()}
}

func (p *process) check(op string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return &ProcessError{Process: p, Operation: op, Err: ErrHandleClose, ExtraInfo: "the handle is closed"}
	}
	return nil
}

// Pid returns the process's ID (in the host's PID namespace).
func (p *process) Pid() int { return p.p.Pid() }

// Kill sends SIGKILL to the process. One that has exited gives ErrElementNotFound.
func (p *process) Kill() error {
	const op = "hcsshim::Process::Kill"
	if err := p.check(op); err != nil {
		return err
	}
	return p.error(op, p.p.Signal(context.Background(), syscall.SIGKILL))
}

// Wait waits for the process to exit. A process killed by the OOM killer gives
// ErrOOMKilled.
func (p *process) Wait() error { return p.wait(context.Background()) }

// WaitTimeout is Wait for at most d; it then gives ErrTimeout.
func (p *process) WaitTimeout(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.wait(ctx)
}

func (p *process) wait(ctx context.Context) error {
	const op = "hcsshim::Process::Wait"
	if err := p.check(op); err != nil {
		return err
	}
	e, err := p.p.Wait(ctx)
	if err != nil {
		return p.error(op, err)
	}
	p.mu.Lock()
	p.exit = e
	p.mu.Unlock()
	if e.OOM {
		return &ProcessError{Process: p, Operation: op, Err: ErrOOMKilled}
	}
	return nil
}

// ExitCode returns the exit status (128+signal for a killed process). A running
// process gives ErrInvalidProcessState.
func (p *process) ExitCode() (int, error) {
	const op = "hcsshim::Process::ExitCode"
	if err := p.check(op); err != nil {
		return -1, err
	}
	p.mu.Lock()
	e := p.exit
	p.mu.Unlock()
	if e == nil {
		e = p.p.Exit()
	}
	if e == nil {
		return -1, &ProcessError{Process: p, Operation: op, Err: ErrInvalidProcessState, ExtraInfo: "the process has not exited"}
	}
	return e.Code, nil
}

// ResizeConsole sets the size of the process's terminal.
func (p *process) ResizeConsole(width, height uint16) error {
	const op = "hcsshim::Process::ResizeConsole"
	if err := p.check(op); err != nil {
		return err
	}
	err := p.p.Resize(context.Background(), width, height)
	if errors.Is(err, compute.ErrNoConsole) {
		return &ProcessError{Process: p, Operation: op, Err: ErrInvalidProcessState, ExtraInfo: err.Error()}
	}
	return p.error(op, err)
}

// Stdio returns new descriptors of this handle's stdin, stdout and stderr
// (nil where the process has none): closing them leaves the handle's own.
func (p *process) Stdio() (io.WriteCloser, io.ReadCloser, io.ReadCloser, error) {
	const op = "hcsshim::Process::Stdio"
	if err := p.check(op); err != nil {
		return nil, nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin == nil && p.stdout == nil && p.stderr == nil {
		return nil, nil, nil, &ProcessError{Process: p, Operation: op, Err: ErrInvalidProcessState, ExtraInfo: "the process has no pipes on this handle (it was opened, or made without pipes)"}
	}
	dup := func(f *os.File) (*os.File, error) {
		if f == nil {
			return nil, nil
		}
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), f.Name()), nil
	}
	in, err := dup(p.stdin)
	if err != nil {
		return nil, nil, nil, p.error(op, err)
	}
	out, err := dup(p.stdout)
	if err != nil {
		return nil, nil, nil, p.error(op, err)
	}
	errf, err := dup(p.stderr)
	if err != nil {
		return nil, nil, nil, p.error(op, err)
	}
	// Typed nils would not compare equal to nil.
	var w io.WriteCloser
	var r1, r2 io.ReadCloser
	if in != nil {
		w = in
	}
	if out != nil {
		r1 = out
	}
	if errf != nil {
		r2 = errf
	}
	return w, r1, r2, nil
}

// CloseStdin closes the write side of the process's stdin (every descriptor of
// it that Stdio handed out must be closed too for the process to see the end).
func (p *process) CloseStdin() error {
	const op = "hcsshim::Process::CloseStdin"
	if err := p.check(op); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin == nil {
		return nil
	}
	if p.p.Console != nil {
		// A terminal's end of input is its EOF character.
		_, err := p.stdin.Write([]byte{4})
		return p.error(op, err)
	}
	err := p.stdin.Close()
	p.stdin = nil
	return p.error(op, err)
}

// Close releases the handle's descriptors; the process goes on.
func (p *process) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.closeAllLocked()
	return nil
}

func (p *process) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAllLocked()
}

func (p *process) closeAllLocked() {
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{p.stdin, p.stdout, p.stderr} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
	p.stdin, p.stdout, p.stderr = nil, nil, nil
}
