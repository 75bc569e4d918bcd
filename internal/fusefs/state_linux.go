package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/state"
)

// unmountTimeout bounds the wait for a helper to exit when ctx has no deadline.
const unmountTimeout = 30 * time.Second

// writeRecord stores rec as dir/record.json (package internal/state).
func writeRecord(dir string, rec *Record) error {
	return state.WriteRecord(filepath.Join(dir, recordFile), rec)
}

func readRecord(dir string) (*Record, error) {
	var rec Record
	if err := state.ReadRecord(filepath.Join(dir, recordFile), recordVersion, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Get returns the record of the live mount id.
func Get(id string) (*Record, error) {
	if !validID(id) {
		return nil, &Error{Op: "get", ID: id, Err: ErrInvalidID}
	}
	rec, err := readRecord(filepath.Join(StateDir(), id))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{Op: "get", ID: id, Err: ErrNotFound}
		}
		return nil, &Error{Op: "get", ID: id, Err: err}
	}
	return rec, nil
}

// List returns the records of the mounts whose helper is alive, sorted by ID.
// Helpers still starting (no record yet) and stale directories are left out.
func List() ([]Record, error) {
	entries, err := os.ReadDir(StateDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &Error{Op: "list", Path: StateDir(), Err: err}
	}
	var out []Record
	for _, e := range entries {
		if !e.IsDir() || !validID(e.Name()) {
			continue
		}
		dir := filepath.Join(StateDir(), e.Name())
		if !locked(dir) {
			continue
		}
		rec, err := readRecord(dir)
		if err != nil {
			continue
		}
		out = append(out, *rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// locked reports whether someone (a helper, or a caller starting one) holds
// the lock of the state directory dir.
func locked(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDONLY, 0)
	if err != nil {
		// No lock file: a directory made by a Mount that died at once, or
		// being removed. Nobody can hold it.
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true
	}
	return false
}

// Unmount unmounts the file system id and waits for its helper to exit, then
// removes its state. A mount still in use gives ErrBusy and stays mounted.
// A mount whose helper died is unmounted lazily.
func Unmount(ctx context.Context, id string) error {
	if !validID(id) {
		return &Error{Op: "unmount", ID: id, Err: ErrInvalidID}
	}
	dir := filepath.Join(StateDir(), id)
	rec, err := readRecord(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &Error{Op: "unmount", ID: id, Err: ErrNotFound}
		}
		return &Error{Op: "unmount", ID: id, Err: err}
	}
	// Open the lock before unmounting: the helper removes the directory as it
	// exits, and the lock is how we see it go.
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &Error{Op: "unmount", ID: id, Err: ErrNotFound}
		}
		return &Error{Op: "unmount", ID: id, Err: err}
	}
	defer lock.Close()
	if !state.Held(lock.Name()) {
		// The helper is gone: a stale mount.
		removeStale(dir, id)
		return nil
	}
	if err := unmount(rec.Mountpoint, id); err != nil {
		return &Error{Op: "unmount", ID: id, Path: rec.Mountpoint, Err: err}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, unmountTimeout)
		defer cancel()
	}
	for {
		if !state.Held(lock.Name()) {
			break
		}
		select {
		case <-ctx.Done():
			return &Error{Op: "unmount", ID: id, Path: rec.Mountpoint,
				Err: fmt.Errorf("waiting for helper %d to exit: %w", rec.PID, ctx.Err())}
		case <-time.After(2 * time.Millisecond):
		}
	}
	// The lock goes as the helper's files are closed, a moment before the
	// process is gone.
	for processRunning(rec.PID) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if err := os.RemoveAll(dir); err != nil {
		return &Error{Op: "unmount", ID: id, Err: err}
	}
	return nil
}

// busyGrace bounds how long unmount retries a mount that the kernel finds
// busy. Other processes touch every mount of this package now and then (the
// statfs probe of Cleanup, run by every attach, looks for dead mounts in all
// state directories), and a mount being looked up by a path walk fails
// umount(2) with EBUSY for that moment. A user that keeps a file open or its
// working directory there keeps the mount busy past the grace.
const busyGrace = 2 * time.Second

// testHookBusy, when set by a test, runs each time unmount finds the mount
// busy and is about to try again.
var testHookBusy func()

// unmount unmounts the FUSE mount of id at mountpoint, if it is still there,
// retrying for busyGrace while the mount is busy.
func unmount(mountpoint, id string) error {
	deadline := time.Now().Add(busyGrace)
	for {
		err := unmountOnce(mountpoint, id)
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			return err
		}
		if testHookBusy != nil {
			testHookBusy()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func unmountOnce(mountpoint, id string) error {
	mounted, err := isOurMount(mountpoint, id)
	if err != nil || !mounted {
		return err
	}
	if os.Geteuid() == 0 {
		err = mount.Unmount(mountpoint)
		switch {
		case err == nil, errors.Is(err, mount.ErrNotMounted), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, mount.ErrBusy):
			return fmt.Errorf("%w: %w", ErrBusy, err)
		}
		return err
	}
	out, err := exec.Command("fusermount3", "-u", mountpoint).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return fmt.Errorf("%w: %s", ErrBusy, msg)
		}
		return fmt.Errorf("fusermount3 -u: %s: %w", msg, err)
	}
	return nil
}

// isOurMount reports whether mountpoint is mounted with id's source.
func isOurMount(mountpoint, id string) (bool, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return false, err
	}
	for _, m := range mounts {
		if m.Mountpoint == mountpoint && m.FSType == fsType && m.Source == sourcePrefix+id {
			return true, nil
		}
	}
	return false, nil
}

// removeStale lazily unmounts a stale mount of id and removes its directory.
// Best effort: what it cannot do now, the next Cleanup retries.
func removeStale(dir, id string) {
	if mounts, err := mountinfo.Read(); err == nil {
		for _, m := range mounts {
			if m.FSType == fsType && m.Source == sourcePrefix+id {
				_ = mount.UnmountDetach(m.Mountpoint)
			}
		}
	}
	_ = os.RemoveAll(dir)
}

// Cleanup removes what crashed helpers and callers left behind: state
// directories whose lock nobody holds (after a lazy unmount of their mount)
// and dead FUSE mounts of this package (ENOTCONN) that no live helper owns.
// It returns the IDs it cleaned. Live mounts are not touched, so it is safe to
// run at any time, from any number of processes.
func Cleanup(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(StateDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, &Error{Op: "cleanup", Path: StateDir(), Err: err}
	}
	var cleaned []string
	live := map[string]bool{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return cleaned, err
		}
		name := e.Name()
		dir := filepath.Join(StateDir(), name)
		if !e.IsDir() || !validID(name) {
			continue
		}
		lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDONLY, 0)
		if err == nil {
			_, recErr := os.Stat(filepath.Join(dir, recordFile))
			if state.Held(lock.Name()) ||
				(errors.Is(recErr, os.ErrNotExist) && recent(dir)) {
				// Held by a helper, or by a Mount about to take it.
				lock.Close()
				live[name] = true
				continue
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			continue
		} else if recent(dir) {
			// A Mount between its mkdir and taking the lock.
			live[name] = true
			continue
		}
		removeStale(dir, name)
		if lock != nil {
			lock.Close()
		}
		cleaned = append(cleaned, name)
	}
	// Dead mounts without a directory: a state directory removed by hand, or
	// a different state directory of an earlier run.
	mounts, err := mountinfo.Read()
	if err != nil {
		return cleaned, &Error{Op: "cleanup", Err: err}
	}
	for _, m := range mounts {
		id, ok := strings.CutPrefix(m.Source, sourcePrefix)
		if m.FSType != fsType || !ok || live[id] {
			continue
		}
		if !Dead(m.Mountpoint) {
			continue
		}
		if err := mount.UnmountDetach(m.Mountpoint); err == nil {
			cleaned = append(cleaned, id)
		}
	}
	return cleaned, nil
}

// recent reports whether dir was made in the last few seconds.
func recent(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && time.Since(fi.ModTime()) < 10*time.Second
}

// processRunning reports whether pid is a process that has not exited yet
// (zombies count as exited).
func processRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// Dead reports whether the FUSE mount at mountpoint has lost its server: it
// asks with statfs(2), which the kernel always sends to the server. stat(2) is
// no test: the attributes of the mount's root stay cached after the server
// died, and a dead mount whose root was looked at before answers stat as if
// it were alive. A server that does not answer within probeTimeout (stopped,
// or stuck) is alive, not dead.
func Dead(mountpoint string) bool {
	_, answered, err := probe(mountpoint)
	return answered && deadConn(err)
}

// Serving reports whether mountpoint is a FUSE mount whose server is there. A
// mountpoint whose mount was detached (say, lazily unmounted by a Cleanup in
// another process) is a plain directory again, and is not serving. A server
// too slow to answer within probeTimeout counts as serving: slow is not gone.
func Serving(mountpoint string) bool {
	typ, answered, err := probe(mountpoint)
	return !answered || err == nil && typ == unix.FUSE_SUPER_MAGIC
}

// probeTimeout bounds how long Dead and Serving wait for a server's answer
// (a variable for tests).
var probeTimeout = 5 * time.Second

// probe runs statfs(2) on mountpoint and returns the file system type, or
// answered false if the call did not return within probeTimeout (it goes on
// in the background until the server answers or dies).
func probe(mountpoint string) (typ int64, answered bool, err error) {
	type result struct {
		typ int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		var sf unix.Statfs_t
		err := unix.Statfs(mountpoint, &sf)
		done <- result{int64(sf.Type), err}
	}()
	t := time.NewTimer(probeTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.typ, true, r.err
	case <-t.C:
		return 0, false, nil
	}
}

// deadConn reports whether err is what a FUSE mount whose server has gone
// answers: ENOTCONN, or ECONNABORTED when the server asked for abort errors.
func deadConn(err error) bool {
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}
