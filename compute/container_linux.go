package compute

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// Container is a handle on a container; any number of processes may hold one.
type Container struct {
	id  string
	dir string
	rec *record
}

// CreateOption changes how Create makes a container.
type CreateOption func(*createOptions)

type createOptions struct {
	inProcess bool
}

// InProcessMonitor runs the container's monitor in the calling process, on
// goroutines, instead of in a process of its own: for a caller that stays until
// the container has stopped and removes it, as `hcs run` does (and as `runc
// run` without --detach supervises its container itself). It spares starting a
// monitor process and the calls to it. Other processes open and drive the
// container as any other. The calling process becomes the child subreaper of
// the container's processes; it reaps only those (and the runc commands it
// runs), never its other children. Should the process die before the
// container has stopped, the container's monitor is gone: the next Open cleans
// the container up, as after a killed monitor.
func InProcessMonitor() CreateOption {
	return func(o *createOptions) { o.inProcess = true }
}

// Process is a handle on a process of a container.
type Process struct {
	c   *Container
	pid int
	// Console is the master of the process's terminal, for the handle that
	// started it with ProcessSpec.Terminal; nil otherwise.
	Console *os.File
}

func newRunc(dir string) *runc.Runc {
	return &runc.Runc{Root: runcRoot(), Log: filepath.Join(dir, runcLog), LogFormat: runc.JSON}
}

// Create makes the container cfg describes: its root file system, its record
// and its monitor. It does not start a process (Start does). On failure
// nothing of it is left.
func Create(ctx context.Context, cfg Config, opts ...CreateOption) (_ *Container, err error) {
	var o createOptions
	for _, opt := range opts {
		opt(&o)
	}
	fail := func(err error) (*Container, error) { return nil, &Error{ID: cfg.ID, Op: "create", Err: err} }
	if !ValidID(cfg.ID) {
		return fail(fmt.Errorf("%w: container ID %q: want 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit", ErrInvalidArgument, cfg.ID))
	}
	go warmSpecEncoding()
	if err := os.MkdirAll(StateDir(), 0o711); err != nil {
		return fail(err)
	}
	dir := containerDir(cfg.ID)
	// A dead container of the same ID is cleaned up first.
	if exists(dir) {
		if _, err := Open(ctx, cfg.ID); err == nil {
			return fail(ErrExists)
		} else if !errors.Is(err, ErrNotFound) {
			return fail(err)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fail(ErrExists)
		}
		return fail(err)
	}
	lock, err := flock(filepath.Join(dir, lockFile), unix.LOCK_EX, false)
	if err != nil {
		os.RemoveAll(dir)
		return fail(err)
	}
	defer lock.Close()
	r := &record{Version: recordVersion, ID: cfg.ID, Phase: "creating", Created: time.Now().UTC(), Config: cfg}
	defer func() {
		if err != nil {
			cleanup(context.WithoutCancel(ctx), dir, r)
		}
	}()
	if err := writeJSON(filepath.Join(dir, recordFile), r); err != nil {
		return fail(err)
	}
	crashPoint("create-after-record")
	if err := mountRoot(ctx, dir, r); err != nil {
		return fail(err)
	}
	crashPoint("create-after-mount")
	if err := writeJSON(filepath.Join(dir, recordFile), r); err != nil {
		return fail(err)
	}
	var local *monitor
	if o.inProcess {
		local, err = startLocalMonitor(dir)
	} else {
		err = startMonitor(dir)
	}
	if err != nil {
		return fail(err)
	}
	crashPoint("create-after-monitor")
	r.Phase = "created"
	if err := writeJSON(filepath.Join(dir, recordFile), r); err != nil {
		if local != nil {
			local.abandon()
		}
		return fail(err)
	}
	return &Container{id: cfg.ID, dir: dir, rec: r}, nil
}

// startLocalMonitor starts the monitor of the container in dir on goroutines of
// this process (InProcessMonitor). Its log is monitor.log, as a monitor
// process's is.
func startLocalMonitor(dir string) (*monitor, error) {
	logf, err := os.OpenFile(filepath.Join(dir, monitorLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	m, err := newMonitor(dir, true, log.New(logf, "", log.LstdFlags))
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the monitor: %w", err)
	}
	localMu.Lock()
	localMonitors[dir] = m
	localMu.Unlock()
	go func() {
		if err := m.serveAll(); err != nil && !m.abandoned.Load() {
			m.log.Print("serving: ", err)
		}
		localMu.Lock()
		delete(localMonitors, dir)
		localMu.Unlock()
		logf.Close()
	}()
	return m, nil
}

// The monitors running in this process, by container directory.
var (
	localMu       sync.Mutex
	localMonitors = map[string]*monitor{}
)

// endLocalMonitor is endMonitor for a monitor of this process (if dir has
// one): it is given grace to finish serving, then abandoned.
func endLocalMonitor(dir string, grace time.Duration) {
	localMu.Lock()
	m := localMonitors[dir]
	localMu.Unlock()
	if m == nil {
		return
	}
	if grace > 0 {
		select {
		case <-m.done:
			return
		case <-time.After(grace):
		}
	}
	m.abandon()
}

// startMonitor re-executes this binary as the container's monitor and waits
// until it serves.
func startMonitor(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	logf, err := os.OpenFile(filepath.Join(dir, monitorLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		pw.Close()
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Args = []string{"hostcompute-monitor", filepath.Base(dir)}
	cmd.Env = append(os.Environ(), envMonitor+"="+dir)
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("starting the monitor: %w", err)
	}
	// Reap it if it ends while this process lives.
	go cmd.Wait()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	line = strings.TrimSpace(line)
	if line != "ok" {
		cmd.Process.Kill()
		if line == "" {
			line = "it exited before serving (is MaybeRunHelper called first in main or TestMain?)"
		}
		return fmt.Errorf("starting the monitor: %s", line)
	}
	return nil
}

// Open returns the container id, made by this process or another. A container
// whose creator died before it was made, or whose monitor died before it had
// stopped, is cleaned up and reported as ErrNotFound.
func Open(ctx context.Context, id string) (*Container, error) {
	fail := func(err error) (*Container, error) { return nil, &Error{ID: id, Op: "open", Err: err} }
	if !ValidID(id) {
		return fail(fmt.Errorf("%w: container ID %q", ErrNotFound, id))
	}
	dir := containerDir(id)
	if !exists(dir) {
		return fail(ErrNotFound)
	}
	lock, err := flock(filepath.Join(dir, lockFile), unix.LOCK_EX, false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail(ErrNotFound)
		}
		return fail(err)
	}
	defer lock.Close()
	if !exists(dir) {
		return fail(ErrNotFound)
	}
	r, err := readRecord(dir)
	if err != nil {
		// A creator that died before its first record.
		if errors.Is(err, fs.ErrNotExist) {
			cleanup(ctx, dir, nil)
			return fail(ErrNotFound)
		}
		return fail(err)
	}
	switch {
	case r.Phase == "creating":
		// We hold the lock, so the creator is gone.
		if err := cleanup(ctx, dir, r); err != nil {
			return fail(err)
		}
		return fail(fmt.Errorf("%w (its creator died before it was made; cleaned up)", ErrNotFound))
	case !exists(filepath.Join(dir, stoppedFile)) && !monitorAlive(dir):
		if err := cleanup(ctx, dir, r); err != nil {
			return fail(err)
		}
		return fail(fmt.Errorf("%w (%w; cleaned up)", ErrNotFound, ErrMonitorLost))
	}
	return &Container{id: id, dir: dir, rec: r}, nil
}

// cleanup removes everything of the container in dir: its monitor, processes,
// runc state, cgroups, mounts, loop devices and state directory.
func cleanup(ctx context.Context, dir string, r *record) error {
	id := filepath.Base(dir)
	if pid, err := readPid(filepath.Join(dir, monitorPid)); err == nil {
		// A monitor that has recorded the stop is on its way out: let it
		// go, then kill what is left.
		grace := time.Duration(0)
		if exists(filepath.Join(dir, stoppedFile)) {
			grace = time.Second
		}
		endMonitor(dir, pid, grace)
	}
	if exists(filepath.Join(runcRoot(), id)) {
		// runc still knows the container (the monitor did not delete it).
		rc := newRunc(dir)
		rc.Kill(ctx, id, int(unix.SIGKILL), &runc.KillOpts{All: true})
		rc.Delete(ctx, id, &runc.DeleteOpts{Force: true})
	}
	var errs []error
	// A monitor that recorded its stop without a cleanup error has removed
	// the cgroups and released the root already: that is not done twice.
	if st, err := readStopped(dir); err != nil || len(st.CleanupErrors) > 0 {
		if err := removeCgroups(id); err != nil {
			errs = append(errs, err)
		}
		if err := releaseRoot(ctx, dir, r); err != nil {
			errs = append(errs, err)
		}
	}
	os.RemoveAll(filepath.Join(runcRoot(), id))
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return os.RemoveAll(dir)
}

// List returns the IDs of the containers, cleaning up dead ones as Open does.
func List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(StateDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if !e.IsDir() || e.Name() == runcStateDir || !ValidID(e.Name()) {
			continue
		}
		if _, err := Open(ctx, e.Name()); err == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.id }

// Config returns the container's configuration.
func (c *Container) Config() Config { return c.rec.Config }

func (c *Container) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) && e.ID == c.id {
		return err
	}
	return &Error{ID: c.id, Op: op, Err: err}
}

// call sends req (and files) to the monitor and returns its answer. A monitor
// that is gone gives ErrStopped when the container has stopped, and
// ErrMonitorLost otherwise.
func (c *Container) call(ctx context.Context, req *request, files ...*os.File) (*response, []*os.File, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixpacket", socketName(c.dir))
	if err != nil {
		return nil, nil, c.gone()
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	if err := send(uc, req, files...); err != nil {
		return nil, nil, c.gone()
	}
	crashPoint("call-" + req.Op + "-sent")
	if dl, ok := ctx.Deadline(); ok {
		uc.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { uc.SetReadDeadline(time.Now()) })
	defer stop()
	var resp response
	out, err := receive(uc, &resp)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, c.gone()
	}
	if err := resp.error(); err != nil {
		closeAll(out)
		return nil, nil, err
	}
	return &resp, out, nil
}

func (c *Container) gone() error {
	if exists(filepath.Join(c.dir, stoppedFile)) {
		return fmt.Errorf("%w: the container has stopped", ErrStopped)
	}
	if !exists(c.dir) {
		return ErrNotFound
	}
	if !monitorAlive(c.dir) {
		return ErrMonitorLost
	}
	return fmt.Errorf("%w: the monitor does not answer", ErrMonitorLost)
}

func (c *Container) startProc(ctx context.Context, op string, p *ProcessSpec) (*Process, error) {
	if len(p.Args) == 0 {
		return nil, c.wrap(op, fmt.Errorf("%w: no command", ErrInvalidArgument))
	}
	pr := &procRequest{Args: p.Args, Env: p.Env, Cwd: p.Cwd, Terminal: p.Terminal, Width: p.ConsoleWidth, Height: p.ConsoleHeight}
	var files []*os.File
	if !p.Terminal {
		if p.Stdin != nil {
			pr.Stdin, files = true, append(files, p.Stdin)
		}
		if p.Stdout != nil {
			pr.Stdout, files = true, append(files, p.Stdout)
		}
		if p.Stderr != nil {
			pr.Stderr, files = true, append(files, p.Stderr)
		}
	}
	resp, out, err := c.call(ctx, &request{Op: op, Proc: pr}, files...)
	if err != nil {
		return nil, c.wrap(op, err)
	}
	proc := &Process{c: c, pid: resp.Pid}
	if len(out) > 0 {
		proc.Console = out[0]
	}
	return proc, nil
}

// Start starts the container's first process, its init: `runc run --detach`.
// The container stops when this process exits.
func (c *Container) Start(ctx context.Context, p *ProcessSpec) (*Process, error) {
	return c.startProc(ctx, "start", p)
}

// Exec starts another process in the running container (`runc exec`).
func (c *Container) Exec(ctx context.Context, p *ProcessSpec) (*Process, error) {
	return c.startProc(ctx, "exec", p)
}

// Info returns the container's state.
func (c *Container) Info(ctx context.Context) (*Info, error) {
	info := &Info{ID: c.id, Created: c.rec.Created, Rootfs: c.rec.Rootfs, Bundle: filepath.Join(c.dir, bundleDir), Config: c.rec.Config, Status: StatusCreated}
	procs, err := c.Processes()
	if err != nil {
		return nil, c.wrap("inspect", err)
	}
	info.Procs = procs
	for _, p := range procs {
		if p.Init {
			info.InitPid, info.Started, info.Status = p.Pid, p.Started, StatusRunning
		}
	}
	if s, err := readStopped(c.dir); err == nil {
		info.Status, info.Exit = StatusStopped, s.InitExit
		return info, nil
	}
	if info.Status == StatusRunning {
		if st, err := newRunc(c.dir).State(ctx, c.id); err == nil && st.Status == "paused" {
			info.Status = StatusPaused
		}
	}
	return info, nil
}

// Processes lists the processes the monitor started, with their exits.
func (c *Container) Processes() ([]ProcInfo, error) {
	entries, err := os.ReadDir(filepath.Join(c.dir, procsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []ProcInfo
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".exit.json") {
			continue
		}
		var pr procRecord
		if err := readJSON(filepath.Join(c.dir, procsDir, n), &pr); err != nil {
			continue
		}
		pi := ProcInfo{Pid: pr.Pid, Args: pr.Args, Init: pr.Init, Terminal: pr.Terminal, Started: pr.Started}
		if ex, err := readExit(c.dir, pr.Pid); err == nil {
			pi.Exit = ex
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// Signal sends sig to the process pid of the container (0: its init).
func (c *Container) Signal(ctx context.Context, pid int, sig syscall.Signal) error {
	_, _, err := c.call(ctx, &request{Op: "signal", Pid: pid, Signal: int(sig)})
	return c.wrap("signal", err)
}

// Shutdown asks the container to stop: SIGTERM to its init process, then
// SIGKILL after timeout (the monitor does it, whatever becomes of the caller).
// A container without a process stops at once. Wait waits for the stop.
func (c *Container) Shutdown(ctx context.Context, timeout time.Duration) error {
	_, _, err := c.call(ctx, &request{Op: "shutdown", Timeout: timeout})
	return c.wrap("shutdown", err)
}

// Kill stops the container at once: SIGKILL to its init process.
func (c *Container) Kill(ctx context.Context) error {
	_, _, err := c.call(ctx, &request{Op: "kill"})
	return c.wrap("kill", err)
}

// Wait waits until the container has stopped and everything it held is
// released, and returns its init process's exit (nil when it never ran one).
func (c *Container) Wait(ctx context.Context) (*Exit, error) {
	for {
		resp, _, err := c.call(ctx, &request{Op: "wait"})
		if err == nil {
			return resp.Exit, nil
		}
		if errors.Is(err, ErrStopped) {
			s, err := readStopped(c.dir)
			if err != nil {
				return nil, c.wrap("wait", err)
			}
			return s.InitExit, nil
		}
		if ctx.Err() != nil {
			return nil, c.wrap("wait", fmt.Errorf("%w: %w", ErrTimeout, ctx.Err()))
		}
		return nil, c.wrap("wait", err)
	}
}

// Stopped reports whether the container has stopped.
func (c *Container) Stopped() bool { return exists(filepath.Join(c.dir, stoppedFile)) }

// Pause freezes every process of the container (`runc pause`).
func (c *Container) Pause(ctx context.Context) error {
	return c.wrap("pause", c.runcOp(ctx, func(r *runc.Runc) error { return r.Pause(ctx, c.id) }))
}

// Resume thaws the container (`runc resume`).
func (c *Container) Resume(ctx context.Context) error {
	return c.wrap("resume", c.runcOp(ctx, func(r *runc.Runc) error { return r.Resume(ctx, c.id) }))
}

func (c *Container) runcOp(ctx context.Context, fn func(*runc.Runc) error) error {
	if c.Stopped() {
		return fmt.Errorf("%w: the container has stopped", ErrStopped)
	}
	if info, err := c.Info(ctx); err == nil && info.InitPid == 0 {
		return fmt.Errorf("%w: the container has no running process", ErrInvalidState)
	}
	if err := fn(newRunc(c.dir)); err != nil {
		if c.Stopped() {
			return fmt.Errorf("%w: the container has stopped", ErrStopped)
		}
		return runcError(err, filepath.Join(c.dir, runcLog))
	}
	return nil
}

// Delete removes the stopped container's state. With force a running
// container is killed and waited for first.
func (c *Container) Delete(ctx context.Context, force bool) error {
	if !exists(c.dir) {
		return nil // removed already
	}
	if !c.Stopped() {
		// The process records say enough (no `runc state`, a runc process,
		// as Info would run): with an init that has not exited the container
		// is running or paused, both refused without force.
		procs, err := c.Processes()
		if err != nil {
			return c.wrap("delete", err)
		}
		initExited, hasInit := false, false
		for _, p := range procs {
			if p.Init {
				hasInit = true
				initExited = p.Exit != nil
			}
		}
		if !force && hasInit && !initExited {
			status := StatusRunning
			if c.Stopped() {
				status = StatusStopped
			} else if st, err := newRunc(c.dir).State(ctx, c.id); err == nil && st.Status == "paused" {
				status = StatusPaused
			}
			return c.wrap("delete", fmt.Errorf("%w: the container is %s (stop it, or force)", ErrInvalidState, status))
		}
		if !initExited {
			if err := c.Kill(ctx); err != nil && !errors.Is(err, ErrStopped) && !errors.Is(err, ErrMonitorLost) {
				return err
			}
		}
		if _, err := c.Wait(ctx); err != nil && !errors.Is(err, ErrMonitorLost) {
			return err
		}
	}
	lock, err := flock(filepath.Join(c.dir, lockFile), unix.LOCK_EX, false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return c.wrap("delete", err)
	}
	defer lock.Close()
	// A monitor writes nothing once stopped.json is there; before that (its
	// container never stopped) give it time to be gone: cleanup waits for it.
	return c.wrap("delete", cleanup(ctx, c.dir, c.rec))
}

// OpenProcess returns the process pid, started by the monitor of this container.
func (c *Container) OpenProcess(pid int) (*Process, error) {
	if pid <= 0 || !exists(procPath(c.dir, pid)) {
		return nil, c.wrap("open process", fmt.Errorf("%w: process %d", ErrNotFound, pid))
	}
	return &Process{c: c, pid: pid}, nil
}

// Pid returns the process's ID (in the host's PID namespace).
func (p *Process) Pid() int { return p.pid }

// Signal sends sig to the process; one that has exited gives ErrStopped.
func (p *Process) Signal(ctx context.Context, sig syscall.Signal) error {
	_, _, err := p.c.call(ctx, &request{Op: "signal", Pid: p.pid, Signal: int(sig)})
	if errors.Is(err, ErrStopped) || errors.Is(err, ErrMonitorLost) {
		if _, rerr := readExit(p.c.dir, p.pid); rerr == nil {
			return p.c.wrap("signal", fmt.Errorf("%w: process %d has exited", ErrStopped, p.pid))
		}
	}
	return p.c.wrap("signal", err)
}

// Wait waits for the process to exit.
func (p *Process) Wait(ctx context.Context) (*Exit, error) {
	if e, err := readExit(p.c.dir, p.pid); err == nil {
		return e, nil
	}
	resp, _, err := p.c.call(ctx, &request{Op: "wait", Pid: p.pid})
	if err == nil {
		return resp.Exit, nil
	}
	if e, rerr := readExit(p.c.dir, p.pid); rerr == nil {
		return e, nil
	}
	if ctx.Err() != nil {
		return nil, p.c.wrap("wait", fmt.Errorf("%w: %w", ErrTimeout, ctx.Err()))
	}
	if errors.Is(err, ErrStopped) {
		// The container stopped without this exit being seen.
		return &Exit{Pid: p.pid, Code: 137, Lost: true}, nil
	}
	return nil, p.c.wrap("wait", err)
}

// Exit returns the process's exit, or nil while it runs.
func (p *Process) Exit() *Exit {
	e, err := readExit(p.c.dir, p.pid)
	if err != nil {
		return nil
	}
	return e
}

// Resize sets the size of the process's terminal.
func (p *Process) Resize(ctx context.Context, width, height uint16) error {
	if p.Console != nil {
		return unix.IoctlSetWinsize(int(p.Console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: width, Row: height})
	}
	_, _, err := p.c.call(ctx, &request{Op: "resize", Pid: p.pid, Width: width, Height: height})
	return p.c.wrap("resize", err)
}

// runcError adds the last error runc logged to err.
func runcError(err error, logPath string) error {
	f, ferr := os.Open(logPath)
	if ferr != nil {
		return err
	}
	defer f.Close()
	if st, serr := f.Stat(); serr == nil && st.Size() > 64<<10 {
		f.Seek(-64<<10, io.SeekEnd)
	}
	var last string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		var l struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(s.Bytes(), &l) == nil && (l.Level == "error" || l.Level == "fatal") {
			last = l.Msg
		}
	}
	if last != "" {
		return fmt.Errorf("%w: runc: %s", err, last)
	}
	return err
}

// bundleSpecFor is the OCI spec of the container r with init process p,
// storage limits on the scratch's disk included.
func bundleSpecFor(r *record, p *ProcessSpec) (any, error) {
	if r.Config.IOPSMaximum > 0 || r.Config.BandwidthMaximum > 0 {
		d, err := scratchDevice(r)
		if err != nil {
			return nil, err
		}
		return bundleSpec(r, p, d)
	}
	return bundleSpec(r, p, nil)
}
