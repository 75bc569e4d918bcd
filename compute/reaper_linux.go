package compute

import (
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// reaper reaps every child of the monitor, as containerd's shim does: the runc
// commands it runs (handed to go-runc as its ProcessMonitor), the container's
// processes once runc has exited (this process is their subreaper), and
// anything else that lands here (runc's intermediate processes, an exec that
// failed half-way). An unreaped zombie in the container's PID namespace would
// keep the namespace's init from ever finishing its exit.
//
// In a caller's process (InProcessMonitor) it reaps only the children it was
// told of — the runc commands and the container processes it watches — each
// with its own wait4: the caller's other children are its own to wait for.
type reaper struct {
	own       bool // reap only the pids registered
	mu        sync.Mutex
	commands  map[int]chan runc.Exit
	processes map[int]func(unix.WaitStatus)
	unclaimed map[int]unclaimedExit // reaped before anyone asked
}

type unclaimedExit struct {
	ws   unix.WaitStatus
	time time.Time
}

var (
	theReaper     *reaper
	theReaperOnce sync.Once
)

// reaperFor returns the process's one reaper (there is one SIGCHLD and one
// go-runc process monitor per process), made on first use: in a process of its
// own a monitor reaps every child; in a caller's process, only its own.
func reaperFor(inProcess bool) *reaper {
	theReaperOnce.Do(func() {
		theReaper = newReaper(inProcess)
		runc.Monitor = theReaper
	})
	return theReaper
}

func newReaper(own bool) *reaper {
	r := &reaper{own: own, commands: map[int]chan runc.Exit{}, processes: map[int]func(unix.WaitStatus){}, unclaimed: map[int]unclaimedExit{}}
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		for range ch {
			if r.own {
				r.reapOwn()
			} else {
				r.reapAll()
			}
		}
	}()
	return r
}

// reapOwn reaps the registered children that have exited.
func (r *reaper) reapOwn() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid := range r.commands {
		r.reapPidLocked(pid)
	}
	for pid := range r.processes {
		r.reapPidLocked(pid)
	}
}

// reapPidLocked reaps pid if it has exited and hands its status to whoever
// registered it.
func (r *reaper) reapPidLocked(pid int) {
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	for err == unix.EINTR {
		got, err = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
	if err == unix.ECHILD {
		// Not (or no longer) a child: a process that was never ours to reap.
		// Its watcher learns nothing more; a status of "killed" says so.
		ws = unix.WaitStatus(unix.SIGKILL)
	} else if got != pid {
		return
	}
	r.deliverLocked(pid, ws)
}

// deliverLocked hands the exit of pid to whoever registered it, and reports
// whether someone had.
func (r *reaper) deliverLocked(pid int, ws unix.WaitStatus) bool {
	if ch, ok := r.commands[pid]; ok {
		delete(r.commands, pid)
		ch <- runc.Exit{Timestamp: time.Now(), Pid: pid, Status: exitStatus(ws)}
		return true
	}
	if fn, ok := r.processes[pid]; ok {
		delete(r.processes, pid)
		go fn(ws)
		return true
	}
	return false
}

func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		if !r.deliverLocked(pid, ws) {
			now := time.Now()
			for p, u := range r.unclaimed {
				// A pid is not reused this soon; older entries are runc's
				// own processes nobody will ask for.
				if now.Sub(u.time) > 30*time.Second {
					delete(r.unclaimed, p)
				}
			}
			r.unclaimed[pid] = unclaimedExit{ws: ws, time: now}
		}
		r.mu.Unlock()
	}
}

// watch calls fn with the exit status of the child pid, now if it has been
// reaped already.
func (r *reaper) watch(pid int, fn func(unix.WaitStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		go fn(u.ws)
		return
	}
	r.processes[pid] = fn
	if r.own {
		// It may have exited before it was registered: its SIGCHLD found
		// nothing to reap then.
		r.reapPidLocked(pid)
	}
}

func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Start is go-runc's ProcessMonitor.Start: the command's exit comes from the
// reaper (registered under the lock, so the reaper cannot see it first).
func (r *reaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := c.Start(); err != nil {
		return nil, err
	}
	ch := make(chan runc.Exit, 1)
	r.commands[c.Process.Pid] = ch
	return ch, nil
}

// StartLocked is Start from a goroutine locked to its thread until the command
// exits, for commands with a parent-death signal (which follows the thread).
func (r *reaper) StartLocked(c *exec.Cmd) (chan runc.Exit, error) {
	started := make(chan error, 1)
	out := make(chan runc.Exit, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ch, err := r.Start(c)
		started <- err
		if err != nil {
			return
		}
		out <- <-ch
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return out, nil
}

// Wait is go-runc's ProcessMonitor.Wait.
func (r *reaper) Wait(c *exec.Cmd, ch chan runc.Exit) (int, error) {
	e := <-ch
	// The process is reaped already; Wait still collects its output copies.
	c.Wait()
	return e.Status, nil
}
