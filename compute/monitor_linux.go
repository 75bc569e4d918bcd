package compute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// envMonitor names the state directory of the container a re-executed binary
// is to monitor.
const envMonitor = "HOSTCOMPUTE_COMPUTE_MONITOR"

// Descriptors the caller hands to the monitor.
const monitorReadyFD = 3

// MaybeRunHelper runs a container's monitor and exits if this process was
// started as one by Create; otherwise it returns at once. Call it first in main
// and in TestMain of every binary that creates containers.
func MaybeRunHelper() {
	dir, ok := os.LookupEnv(envMonitor)
	if !ok {
		return
	}
	os.Unsetenv(envMonitor)
	ready := os.NewFile(monitorReadyFD, "ready")
	err := runMonitor(dir, ready)
	if err != nil {
		log.Print("monitor: ", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// crashPoint kills this process at the named step when the test hook
// $HOSTCOMPUTE_COMPUTE_CRASH names it: the crash tests use it to stop a caller
// or a monitor at every step.
func crashPoint(step string) {
	if v := os.Getenv("HOSTCOMPUTE_COMPUTE_CRASH"); v != "" && v == step {
		unix.Kill(os.Getpid(), unix.SIGKILL)
		select {}
	}
}

type mproc struct {
	rec    procRecord
	exited chan struct{}
	exit   *Exit
	master *os.File // the console master, kept for resizing
}

type monitor struct {
	dir       string
	rec       *record
	runc      *runc.Runc
	reaper    *reaper
	lock      *os.File // monitor.lock, held while serving
	listener  *net.UnixListener
	inProcess bool
	log       *log.Logger
	done      chan struct{} // closed when serveAll has returned
	abandoned atomic.Bool

	mu       sync.Mutex
	init     *mproc
	procs    map[int]*mproc
	starting bool          // a start is under way
	startEnd chan struct{} // closed when it ends
	stopping bool
	stopped  chan struct{}
	execSeq  int
	oomBase  uint64
}

func runMonitor(dir string, ready *os.File) error {
	debug.SetGCPercent(50)
	m, err := newMonitor(dir, false, log.New(os.Stderr, "", log.LstdFlags))
	if err != nil {
		fmt.Fprintln(ready, err)
		return err
	}
	fmt.Fprintln(ready, "ok")
	ready.Close()
	crashPoint("monitor-ready")
	// A monitor idles for its container's life: what start-up allocated goes
	// back to the system now, and after each request.
	go debug.FreeOSMemory()
	return m.serveAll()
}

// newMonitor makes the monitor of the container in dir: it takes the monitor
// lock, makes this process the child subreaper, and listens on the container's
// socket. inProcess says it serves from goroutines of its caller's process
// (see InProcessMonitor) rather than from a process of its own.
func newMonitor(dir string, inProcess bool, logger *log.Logger) (_ *monitor, err error) {
	lock, err := flock(filepath.Join(dir, monitorLock), unix.LOCK_EX, true)
	if err != nil {
		return nil, fmt.Errorf("taking the monitor lock: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("becoming a subreaper: %w", err)
	}
	r, err := readRecord(dir)
	if err != nil {
		return nil, err
	}
	m := &monitor{dir: dir, rec: r, procs: map[int]*mproc{}, stopped: make(chan struct{}), done: make(chan struct{}),
		lock: lock, inProcess: inProcess, log: logger,
		runc: &runc.Runc{Root: runcRoot(), Log: filepath.Join(dir, runcLog), LogFormat: runc.JSON, PdeathSignal: unix.SIGKILL}}
	if inProcess {
		// The container's processes are not in the caller's process group,
		// so that the terminal's signals reach the caller alone, as they reach
		// a monitor of its own session.
		m.runc.Setpgid = true
	}
	m.reaper = reaperFor(inProcess)
	if m.listener, err = net.ListenUnix("unixpacket", &net.UnixAddr{Name: socketName(dir), Net: "unixpacket"}); err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, monitorPid), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		m.listener.Close()
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, procsDir), 0o700); err != nil {
		m.listener.Close()
		return nil, err
	}
	return m, nil
}

// serveAll answers requests until the container has stopped and every
// request being served is answered, then releases the monitor lock.
func (m *monitor) serveAll() error {
	defer close(m.done)
	defer m.lock.Close()
	go func() {
		<-m.stopped
		// Connections being served are answered (the loop waits for them);
		// later ones are refused and read the records.
		m.listener.Close()
	}()
	var wg sync.WaitGroup
	for {
		c, err := m.listener.AcceptUnix()
		if err != nil {
			select {
			case <-m.stopped:
				wg.Wait()
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.serve(c)
			c.Close()
			if !m.inProcess && !m.isStopping() {
				// After the answer, off the caller's path.
				debug.FreeOSMemory()
			}
		}()
	}
}

// abandon stops serving at once, whatever the container's state, and waits
// until the monitor lock is released: for a monitor in a caller's process
// whose container is being cleaned up (a failed Create, or a cleanup that
// found it still serving).
func (m *monitor) abandon() {
	m.abandoned.Store(true)
	m.listener.Close()
	<-m.done
}

func (m *monitor) isStopping() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopping
}

func (m *monitor) serve(c *net.UnixConn) {
	var req request
	files, err := receive(c, &req)
	if err != nil {
		return
	}
	resp, out := m.handle(&req, files)
	closeAll(files)
	send(c, resp, out...)
	for _, f := range out {
		f.Close()
	}
}

func (m *monitor) handle(req *request, files []*os.File) (*response, []*os.File) {
	ctx := context.Background()
	switch req.Op {
	case "ping":
		return &response{Pid: os.Getpid()}, nil
	case "start", "exec":
		if req.Proc == nil || len(req.Proc.Args) == 0 {
			return errResponse(fmt.Errorf("%w: no command", ErrInvalidArgument)), nil
		}
		p, master, err := m.startProcess(ctx, req.Op == "start", req.Proc, files)
		if err != nil {
			return errResponse(err), nil
		}
		var out []*os.File
		if master != nil {
			out = append(out, master)
		}
		return &response{Pid: p}, out
	case "signal":
		return m.signal(req.Pid, syscall.Signal(req.Signal)), nil
	case "wait":
		return m.wait(req.Pid), nil
	case "shutdown", "kill":
		return m.stop(req.Op == "kill", req.Timeout), nil
	case "resize":
		m.mu.Lock()
		p := m.lookup(req.Pid)
		m.mu.Unlock()
		if p == nil {
			return errResponse(fmt.Errorf("%w: process %d", ErrNotFound, req.Pid)), nil
		}
		if p.master == nil {
			return errResponse(fmt.Errorf("%w: process %d", ErrNoConsole, req.Pid)), nil
		}
		if err := unix.IoctlSetWinsize(int(p.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: req.Width, Row: req.Height}); err != nil {
			return errResponse(err), nil
		}
		return &response{}, nil
	}
	return errResponse(fmt.Errorf("%w: unknown operation %q", ErrInvalidArgument, req.Op)), nil
}

func (m *monitor) lookup(pid int) *mproc {
	if pid == 0 {
		return m.init
	}
	return m.procs[pid]
}

// fileIO hands descriptors received from a caller to runc as they are.
type fileIO struct{ in, out, err *os.File }

func (f *fileIO) Close() error          { return nil }
func (f *fileIO) Stdin() io.WriteCloser { return nil }
func (f *fileIO) Stdout() io.ReadCloser { return nil }
func (f *fileIO) Stderr() io.ReadCloser { return nil }
func (f *fileIO) Set(cmd *exec.Cmd) {
	if f.in != nil {
		cmd.Stdin = f.in
	}
	if f.out != nil {
		cmd.Stdout = f.out
	}
	if f.err != nil {
		cmd.Stderr = f.err
	}
}

// nullFile is /dev/null, for runc's standard descriptors the caller did not
// give (go-runc captures runc's output otherwise, and the process would inherit
// that pipe).
func nullFile() *os.File {
	f, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	return f
}

func (m *monitor) startProcess(ctx context.Context, isInit bool, pr *procRequest, files []*os.File) (int, *os.File, error) {
	m.mu.Lock()
	switch {
	case m.stopping:
		m.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: the container is stopping", ErrStopped)
	case isInit && (m.init != nil || m.starting):
		m.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: the container's first process has been started already", ErrInvalidState)
	case !isInit && m.init == nil:
		m.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: the container has no running process to join (start one first)", ErrInvalidState)
	}
	if isInit {
		m.starting = true
		m.startEnd = make(chan struct{})
	}
	m.execSeq++
	seq := m.execSeq
	m.mu.Unlock()
	if isInit {
		defer func() {
			m.mu.Lock()
			m.starting = false
			close(m.startEnd)
			m.mu.Unlock()
		}()
	}

	spec := &ProcessSpec{Args: pr.Args, Env: pr.Env, Cwd: pr.Cwd, Terminal: pr.Terminal, ConsoleWidth: pr.Width, ConsoleHeight: pr.Height}
	fio := &fileIO{}
	i := 0
	take := func(have bool) *os.File {
		if have && i < len(files) {
			f := files[i]
			i++
			return f
		}
		return nil
	}
	fio.in, fio.out, fio.err = take(pr.Stdin), take(pr.Stdout), take(pr.Stderr)
	var nulls []*os.File
	for _, p := range []**os.File{&fio.in, &fio.out, &fio.err} {
		if *p == nil && !pr.Terminal {
			*p = nullFile()
			nulls = append(nulls, *p)
		}
	}
	defer closeAll(nulls)
	var io runc.IO = fio
	var sock *runc.Socket
	if pr.Terminal {
		var err error
		if sock, err = runc.NewTempConsoleSocket(); err != nil {
			return 0, nil, err
		}
		defer sock.Close()
		// runc's own output goes to the log; the process has the terminal.
		n := nullFile()
		defer n.Close()
		io = &fileIO{in: n, out: n, err: n}
	}
	pidFile := filepath.Join(m.dir, procsDir, fmt.Sprintf(".start-%d.pid", seq))
	defer os.Remove(pidFile)
	var err error
	if isInit {
		s, serr := bundleSpecFor(m.rec, spec)
		if serr != nil {
			return 0, nil, serr
		}
		bundle := filepath.Join(m.dir, bundleDir)
		if err := os.MkdirAll(bundle, 0o700); err != nil {
			return 0, nil, err
		}
		if err := writeJSON(filepath.Join(bundle, "config.json"), s); err != nil {
			return 0, nil, err
		}
		m.oomBase = oomKills(m.rec.ID)
		// One `runc run --detach` rather than `runc create` and `runc start`:
		// a runc process less per container (a fifth of the start-to-exit
		// time of a short container). Nothing needs to happen between the two
		// here: an exit before the process is watched below waits in the
		// reaper, and a crash in between leaves a running container whose
		// monitor is gone, which the next open cleans up as any other.
		opts := &runc.CreateOpts{IO: io, PidFile: pidFile, Detach: true}
		if sock != nil {
			opts.ConsoleSocket = sock
		}
		crashPoint("monitor-before-run")
		_, err = m.runc.Run(ctx, m.rec.ID, bundle, opts)
		crashPoint("monitor-after-run")
	} else {
		opts := &runc.ExecOpts{IO: io, PidFile: pidFile, Detach: true}
		if sock != nil {
			opts.ConsoleSocket = sock
		}
		err = m.runc.Exec(ctx, m.rec.ID, processSpec(spec), opts)
	}
	if err != nil {
		err = runcError(err, filepath.Join(m.dir, runcLog))
		if isInit {
			// Leave nothing of a failed create: the container stays created.
			m.runc.Delete(ctx, m.rec.ID, &runc.DeleteOpts{Force: true})
			removeCgroups(m.rec.ID)
		}
		return 0, nil, err
	}
	var master *os.File
	if sock != nil {
		con, err := sock.ReceiveMaster()
		if err != nil {
			return 0, nil, fmt.Errorf("receiving the console: %w", err)
		}
		// A descriptor of our own: con's file closes its own when collected.
		fd, err := unix.FcntlInt(con.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		con.Close()
		if err != nil {
			return 0, nil, err
		}
		master = os.NewFile(uintptr(fd), "console")
	}
	pid, err := readPid(pidFile)
	if err != nil {
		if master != nil {
			master.Close()
		}
		return 0, nil, err
	}
	p := &mproc{rec: procRecord{Pid: pid, Args: pr.Args, Init: isInit, Terminal: pr.Terminal, Started: time.Now().UTC()}, exited: make(chan struct{}), master: master}
	if err := writeJSON(procPath(m.dir, pid), &p.rec); err != nil {
		return 0, nil, err
	}
	m.mu.Lock()
	m.procs[pid] = p
	if isInit {
		m.init = p
	}
	m.mu.Unlock()
	m.reaper.watch(pid, func(ws unix.WaitStatus) { m.reaped(p, ws) })
	if isInit {
		crashPoint("monitor-after-record")
	}
	var out *os.File
	if master != nil {
		// The caller gets its own descriptor of the master.
		fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return 0, nil, err
		}
		out = os.NewFile(uintptr(fd), "console")
	}
	return pid, out, nil
}

// reaped records the exit of p, reaped by the reaper (this process is its
// subreaper since runc exited).
func (m *monitor) reaped(p *mproc, ws unix.WaitStatus) {
	e := &Exit{Pid: p.rec.Pid, Time: time.Now().UTC()}
	switch {
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.Code = 128 + e.Signal
		if ws.Signal() == unix.SIGKILL && oomKills(m.rec.ID) > m.oomBase {
			e.OOM = true
		}
	default:
		e.Code = ws.ExitStatus()
	}
	if err := writeJSON(exitPath(m.dir, p.rec.Pid), e); err != nil {
		m.log.Printf("recording the exit of %d: %v", p.rec.Pid, err)
	}
	m.mu.Lock()
	p.exit = e
	if p.master != nil {
		p.master.Close()
		p.master = nil
	}
	close(p.exited)
	isInit := p == m.init
	m.mu.Unlock()
	if isInit {
		m.finish(e)
	}
}

func (m *monitor) signal(pid int, sig syscall.Signal) *response {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pid == 0 && m.starting {
		// A signal for the init being started is for the process it will be
		// (it may run already: runc returns once it has started it).
		end := m.startEnd
		m.mu.Unlock()
		<-end
		m.mu.Lock()
	}
	p := m.lookup(pid)
	if p == nil {
		if pid == 0 {
			return errResponse(fmt.Errorf("%w: the container has no running process", ErrInvalidState))
		}
		return errResponse(fmt.Errorf("%w: process %d", ErrNotFound, pid))
	}
	if p.exit != nil {
		return errResponse(fmt.Errorf("%w: process %d has exited", ErrStopped, p.rec.Pid))
	}
	// p has not been reaped, so its pid cannot have been reused.
	if err := unix.Kill(p.rec.Pid, sig); err != nil {
		return errResponse(err)
	}
	return &response{Pid: p.rec.Pid}
}

func (m *monitor) wait(pid int) *response {
	if pid == 0 {
		<-m.stopped
		s, err := readStopped(m.dir)
		if err != nil {
			return errResponse(err)
		}
		return &response{Exit: s.InitExit}
	}
	m.mu.Lock()
	p := m.procs[pid]
	m.mu.Unlock()
	if p == nil {
		return errResponse(fmt.Errorf("%w: process %d", ErrNotFound, pid))
	}
	<-p.exited
	return &response{Pid: pid, Exit: p.exit}
}

// stop ends the container: with kill at once, otherwise SIGTERM to its init
// process and SIGKILL after timeout. A container without processes stops now.
func (m *monitor) stop(kill bool, timeout time.Duration) *response {
	m.mu.Lock()
	if m.starting {
		// Let the start finish: then there is a process to stop, or none.
		end := m.startEnd
		m.mu.Unlock()
		<-end
		m.mu.Lock()
	}
	init := m.init
	starting := m.starting
	if init == nil && !starting {
		already := m.stopping
		m.stopping = true
		m.mu.Unlock()
		if !already {
			go m.finish(nil)
		}
		return &response{}
	}
	m.mu.Unlock()
	if init == nil {
		return errResponse(fmt.Errorf("%w: the container's first process is being started", ErrInvalidState))
	}
	select {
	case <-init.exited:
		return errResponse(fmt.Errorf("%w: the container has stopped", ErrStopped))
	default:
	}
	if kill {
		m.signal(0, unix.SIGKILL)
		return &response{}
	}
	m.signal(0, unix.SIGTERM)
	go func() {
		select {
		case <-init.exited:
		case <-time.After(timeout):
			m.signal(0, unix.SIGKILL)
		}
	}()
	return &response{}
}

// finish runs once the container's init has exited (or a container without
// processes is stopped): it collects the other processes, deletes the runc
// container and its cgroups, releases the root file system and records the stop.
func (m *monitor) finish(initExit *Exit) {
	ctx := context.Background()
	m.mu.Lock()
	m.stopping = true
	var others []*mproc
	for _, p := range m.procs {
		if p != m.init {
			others = append(others, p)
		}
	}
	m.mu.Unlock()
	var errs []string
	if initExit != nil {
		// The kernel kills the rest of the PID namespace with its init; a
		// process that somehow stays is killed through the cgroup below.
		deadline := time.After(2 * time.Second)
		for _, p := range others {
			select {
			case <-p.exited:
			case <-deadline:
			}
		}
	}
	crashPoint("monitor-before-delete")
	// What `runc delete` does for a stopped container whose PID namespace is
	// its own (every container here has one) is done here instead, without a
	// runc process: the cgroups are removed (any process left in them killed
	// first) and runc's state directory goes. runc runs only for a container
	// it may still think running (no init exit was seen).
	if initExit == nil && exists(filepath.Join(runcRoot(), m.rec.ID)) {
		if err := m.runc.Delete(ctx, m.rec.ID, &runc.DeleteOpts{Force: true}); err != nil {
			if st, serr := m.runc.State(ctx, m.rec.ID); serr == nil && st != nil {
				errs = append(errs, "runc delete: "+runcError(err, filepath.Join(m.dir, runcLog)).Error())
			}
		}
	}
	if err := removeCgroups(m.rec.ID); err != nil {
		errs = append(errs, err.Error())
	}
	os.RemoveAll(filepath.Join(runcRoot(), m.rec.ID))
	if err := releaseRoot(ctx, m.dir, m.rec); err != nil {
		errs = append(errs, err.Error())
	}
	for _, e := range errs {
		m.log.Print(e)
	}
	if err := writeJSON(filepath.Join(m.dir, stoppedFile), &stopRecord{Time: time.Now().UTC(), InitExit: initExit, CleanupErrors: errs}); err != nil {
		m.log.Print("recording the stop: ", err)
	}
	close(m.stopped)
}
