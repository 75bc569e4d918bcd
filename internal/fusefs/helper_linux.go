package fusefs

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// File descriptors the caller hands to the helper.
const (
	readyFD = 3 // write end of the pipe the caller waits on
	lockFD  = 4 // the state directory's lock, already flock'd
)

// cacheTimeout is the entry and attribute timeout of every mount: file systems
// served here change only through their own mount, so the kernel may keep
// what it learnt.
const cacheTimeout = time.Hour

// MaybeRunHelper serves a file system and exits if this process was started
// as a helper by Mount; otherwise it returns at once. Call it first in main
// and in TestMain of every binary that calls Mount.
func MaybeRunHelper() {
	reqJSON, ok := os.LookupEnv(envHelper)
	if !ok {
		return
	}
	os.Unsetenv(envHelper)
	ready := os.NewFile(readyFD, "ready")
	var req Request
	if err := json.Unmarshal([]byte(reqJSON), &req); err != nil {
		helperExit(ready, fmt.Errorf("decoding the request: %w", err))
	}
	helperExit(ready, serve(req, ready))
}

// helperExit reports err (if any, and if the caller is still waiting) and exits.
func helperExit(ready *os.File, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "fusefs helper:", err)
		if ready != nil {
			fmt.Fprintln(ready, err)
		}
		os.Exit(1)
	}
	os.Exit(0)
}

// serve runs in the helper: it opens and mounts the file system, reports
// readiness through ready (and closes it), and serves until unmounted.
func serve(req Request, ready *os.File) error {
	dir := filepath.Join(StateDir(), req.ID)
	lock := os.NewFile(lockFD, lockFile)
	// The caller took the lock on the same open file description, so it is
	// ours too; it is released when this process exits, however it exits.
	defer lock.Close()

	open, ok := lookupKind(req.Kind)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, req.Kind)
	}
	fsys, err := open(req)
	if err != nil {
		return fmt.Errorf("opening %s: %w", req.Source, err)
	}
	closeFS := func() error {
		if fsys.Close != nil {
			return fsys.Close()
		}
		return nil
	}
	timeout := cacheTimeout
	opts := &gofs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		MountOptions: fuse.MountOptions{
			FsName:                   sourcePrefix + req.ID,
			Name:                     fsTypeName,
			DirectMount:              os.Geteuid() == 0,
			AllowOther:               os.Geteuid() == 0,
			MaxWrite:                 1 << 20,
			MaxReadAhead:             1 << 20,
			ExplicitDataCacheControl: true,
		},
	}
	if req.ReadOnly {
		// "ro" for fusermount3; the flag for a direct mount(2).
		opts.MountOptions.Options = append(opts.MountOptions.Options, "ro")
		opts.MountOptions.DirectMountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_RDONLY
	}
	if fsys.Options != nil {
		fsys.Options(opts)
	}
	server, err := mountFS(req.Mountpoint, fsys, opts)
	if err != nil {
		closeFS()
		return fmt.Errorf("mounting on %s: %w", req.Mountpoint, err)
	}
	rec := Record{
		Version:    recordVersion,
		ID:         req.ID,
		Kind:       req.Kind,
		Source:     req.Source,
		Mountpoint: req.Mountpoint,
		ReadOnly:   req.ReadOnly,
		Params:     req.Params,
		PID:        os.Getpid(),
		Started:    time.Now().UTC(),
	}
	if err := writeRecord(dir, &rec); err != nil {
		_ = server.Unmount()
		closeFS()
		return fmt.Errorf("writing the record: %w", err)
	}

	// Unmount on the usual termination signals; SIGKILL leaves a dead mount
	// that Cleanup removes.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	go func() {
		for range sigs {
			if err := server.Unmount(); err != nil {
				fmt.Fprintln(os.Stderr, "fusefs helper: unmount on signal:", err)
			}
		}
	}()

	fmt.Fprintln(ready, readyMessage)
	ready.Close()
	server.Wait()
	err = closeFS()
	// Remove the state while still holding the lock: whoever waits for the
	// lock (Unmount) then finds nothing left to do.
	if rmErr := os.RemoveAll(dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// mountFS mounts fsys at dir and starts serving it, as gofs.Mount does, with
// fsys.WrapRaw around the raw file system when it is set.
func mountFS(dir string, fsys *FS, opts *gofs.Options) (*fuse.Server, error) {
	if fsys.WrapRaw == nil {
		return gofs.Mount(dir, fsys.Root, opts)
	}
	server, err := fuse.NewServer(fsys.WrapRaw(gofs.NewNodeFS(fsys.Root, opts)), dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, err
	}
	return server, nil
}
