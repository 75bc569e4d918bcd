package fusefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/state"
)

// startTimeout bounds the wait for a helper when ctx has no deadline.
const startTimeout = 30 * time.Second

// Mount starts a helper process that serves req and returns its record once
// the kernel has the mount. The helper outlives the caller; end it with
// Unmount. On failure nothing is left behind: no helper, no mount, no state.
func Mount(ctx context.Context, req Request) (*Record, error) {
	if _, ok := os.LookupEnv(envHelper); ok {
		// A helper that reached this far was started from a binary whose
		// main (or TestMain) does not call MaybeRunHelper: refuse rather
		// than start helpers of helpers.
		return nil, &Error{Op: "mount", ID: req.ID, Err: fmt.Errorf("%w: this binary does not call fusefs.MaybeRunHelper first in main or TestMain", ErrHelper)}
	}
	if req.ID == "" {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, &Error{Op: "mount", Err: err}
		}
		req.ID = hex.EncodeToString(b[:])
	}
	if !validID(req.ID) {
		return nil, &Error{Op: "mount", ID: req.ID, Err: ErrInvalidID}
	}
	if _, ok := lookupKind(req.Kind); !ok {
		return nil, &Error{Op: "mount", ID: req.ID, Err: fmt.Errorf("%w %q", ErrUnknownKind, req.Kind)}
	}
	if req.Source != "" {
		abs, err := filepath.Abs(req.Source)
		if err != nil {
			return nil, &Error{Op: "mount", ID: req.ID, Path: req.Source, Err: err}
		}
		req.Source = abs
	}
	dir := filepath.Join(StateDir(), req.ID)
	if err := os.MkdirAll(StateDir(), 0o700); err != nil {
		return nil, &Error{Op: "mount", ID: req.ID, Path: dir, Err: err}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, &Error{Op: "mount", ID: req.ID, Path: dir, Err: fmt.Errorf("ID in use: %w", os.ErrExist)}
		}
		return nil, &Error{Op: "mount", ID: req.ID, Path: dir, Err: err}
	}
	rec, err := startHelper(ctx, dir, req)
	if err != nil {
		// The helper is gone (it failed or was killed); take back whatever it
		// may have mounted and the directory.
		removeStale(dir, req.ID)
		return nil, &Error{Op: "mount", ID: req.ID, Path: req.Mountpoint, Err: err}
	}
	return rec, nil
}

// startHelper runs the helper for req with its state in dir and waits for it
// to report. When it returns an error, the helper has exited.
func startHelper(ctx context.Context, dir string, req Request) (*Record, error) {
	if req.Mountpoint == "" {
		req.Mountpoint = filepath.Join(dir, mountDir)
		if err := os.Mkdir(req.Mountpoint, 0o755); err != nil {
			return nil, err
		}
	} else {
		abs, err := filepath.Abs(req.Mountpoint)
		if err != nil {
			return nil, err
		}
		req.Mountpoint = abs
	}
	// The caller holds the lock until the helper has it too, so that Cleanup
	// never sees an unlocked directory while a helper is starting.
	lock, err := state.LockFile(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	reqJSON, err := json.Marshal(req)
	if err != nil {
		readyW.Close()
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		readyW.Close()
		return nil, err
	}
	// /proc/self/exe is the running binary even if its path was replaced since.
	cmd := exec.Command("/proc/self/exe", "fusefs-helper", req.ID)
	cmd.Args[0] = exe
	cmd.Env = append(os.Environ(), envHelper+"="+string(reqJSON), state.EnvRoot+"="+state.Root())
	cmd.Dir = "/"
	cmd.Stdin = devnull
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{readyW, lock.File()} // fds 3 and 4 in the helper
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return nil, err
	}
	readyW.Close()
	exited := make(chan error, 1)
	// Reap the helper whenever it exits, so it never lingers as a zombie of a
	// long-lived caller; after the caller exits, init reaps it instead.
	go func() { exited <- cmd.Wait() }()

	type reply struct {
		msg string
		err error
	}
	replies := make(chan reply, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(readyR, 64<<10))
		replies <- reply{strings.TrimSpace(string(b)), err}
	}()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	var r reply
	select {
	case r = <-replies:
	case <-ctx.Done():
		_ = cmd.Process.Signal(unix.SIGKILL)
		<-exited
		return nil, fmt.Errorf("waiting for the helper: %w", ctx.Err())
	}
	if r.err == nil && r.msg == readyMessage {
		rec, err := readRecord(dir)
		if err != nil {
			_ = cmd.Process.Signal(unix.SIGKILL)
			<-exited
			return nil, fmt.Errorf("helper reported ready but its record is unreadable: %w", err)
		}
		return rec, nil
	}
	// The helper closes the pipe only by exiting or after reporting; wait for it.
	_ = cmd.Process.Signal(unix.SIGKILL)
	waitErr := <-exited
	msg := r.msg
	if msg == "" {
		msg = helperFailed
		if waitErr != nil {
			msg += " (" + waitErr.Error() + ")"
		}
		if b, err := os.ReadFile(filepath.Join(dir, logFile)); err == nil && len(b) > 0 {
			msg += ": " + strings.TrimSpace(lastLines(string(b), 5))
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrHelper, msg)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
