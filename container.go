package hostcompute

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hostcompute/hostcompute/compute"
)

// Container represents a created (but not necessarily running) container.
//
// On Linux a container is run by runc and watched by a monitor process (see
// package compute): it outlives the process that created it, and OpenContainer
// finds it from any process. Its first process (the first CreateProcess after
// Start) is its init: the container stops when that process exits, as a Linux
// container on a utility VM does under HCS.
type Container interface {
	// Start synchronously starts the container.
	Start() error
	// Shutdown requests a container shutdown, but it may not actually be shutdown until Wait() succeeds.
	Shutdown() error
	// Terminate requests a container terminate, but it may not actually be terminated until Wait() succeeds.
	Terminate() error
	// Waits synchronously waits for the container to shutdown or terminate.
	Wait() error
	// WaitTimeout synchronously waits for the container to terminate or the duration to elapse. It
	// returns false if timeout occurs.
	WaitTimeout(time.Duration) error
	// Pause pauses the execution of a container.
	Pause() error
	// Resume resumes the execution of a container.
	Resume() error
	// HasPendingUpdates returns true if the container has updates pending to install.
	HasPendingUpdates() (bool, error)
	// Statistics returns statistics for a container.
	Statistics() (Statistics, error)
	// CreateProcess launches a new process within the container.
	CreateProcess(c *ProcessConfig) (Process, error)
	// OpenProcess gets an interface to an existing process within the container.
	OpenProcess(pid int) (Process, error)
	// Close cleans up any state associated with the container but does not terminate or wait for it.
	Close() error
}

// ShutdownTimeout is how long Shutdown lets a container's init process handle
// SIGTERM before it is killed with SIGKILL (a PID 1 without a handler ignores
// SIGTERM).
var ShutdownTimeout = 10 * time.Second

// ErrOOMKilled is the Err of the *ContainerError or *ProcessError that Wait
// returns when the kernel's out-of-memory killer ended the process (the
// container reached MemoryMaximumInMB); ExitCode is then 137.
var ErrOOMKilled = compute.ErrOOMKilled

type container struct {
	id string
	c  *compute.Container

	mu      sync.Mutex
	started bool
	closed  bool
}

// CreateContainer creates a new container with the given configuration but does not start it.
func CreateContainer(id string, c *ContainerConfig) (Container, error) {
	ctr := &container{id: id}
	const op = "hcsshim::CreateContainer"
	if c == nil {
		return nil, ctr.error(op, fmt.Errorf("%w: nil configuration", compute.ErrInvalidArgument))
	}
	cfg, err := computeConfig(id, c)
	if err != nil {
		return nil, ctr.error(op, err)
	}
	cc, err := compute.Create(context.Background(), cfg)
	if err != nil {
		return nil, ctr.error(op, err)
	}
	ctr.c = cc
	return ctr, nil
}

// OpenContainer opens an existing container by ID.
func OpenContainer(id string) (Container, error) {
	ctr := &container{id: id}
	cc, err := compute.Open(context.Background(), id)
	if err != nil {
		return nil, ctr.error("hcsshim::OpenContainer", err)
	}
	ctr.c = cc
	info, err := cc.Info(context.Background())
	if err == nil && info.Status != compute.StatusCreated {
		ctr.started = true
	}
	return ctr, nil
}

func computeConfig(id string, c *ContainerConfig) (compute.Config, error) {
	cfg := compute.Config{ID: id, Scratch: c.LayerFolderPath, ScratchSize: c.StorageSandboxSize, Hostname: c.HostName}
	if c.HvPartition || c.HvRuntime != nil {
		return cfg, fmt.Errorf("%w: Hyper-V isolation (HvPartition, HvRuntime) needs a Hyper-V host; containers here are runc containers on the host kernel", compute.ErrUnsupported)
	}
	for _, l := range c.Layers {
		cfg.Layers = append(cfg.Layers, compute.Layer{ID: l.ID, Path: l.Path})
	}
	for _, m := range c.MappedDirectories {
		if m.CreateInUtilityVM || m.BandwidthMaximum != 0 || m.IOPSMaximum != 0 {
			return cfg, fmt.Errorf("%w: mapped directory %s: CreateInUtilityVM and per-directory storage limits need a utility VM", compute.ErrUnsupported, m.HostPath)
		}
		cfg.Mounts = append(cfg.Mounts, compute.Mount{Source: m.HostPath, Destination: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	if c.ProcessorMaximum < 0 || c.ProcessorMaximum > 100 {
		return cfg, fmt.Errorf("%w: ProcessorMaximum %d: want 0..100 (percent of the host's processor time)", compute.ErrInvalidArgument, c.ProcessorMaximum)
	}
	if c.ProcessorWeight > 10000 {
		return cfg, fmt.Errorf("%w: ProcessorWeight %d: want 0..10000", compute.ErrInvalidArgument, c.ProcessorWeight)
	}
	if c.MemoryMaximumInMB < 0 {
		return cfg, fmt.Errorf("%w: MemoryMaximumInMB %d is negative", compute.ErrInvalidArgument, c.MemoryMaximumInMB)
	}
	cfg.Resources = compute.Resources{
		CPUCount: c.ProcessorCount, CPUWeight: c.ProcessorWeight, CPUMaximum: c.ProcessorMaximum,
		MemoryBytes: c.MemoryMaximumInMB << 20, IOPSMaximum: c.StorageIOPSMaximum, BandwidthMaximum: c.StorageBandwidthMaximum,
	}
	if len(c.EndpointList) > 0 {
		if err := joinEndpoints(&cfg, c.EndpointList); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// error wraps err, from package compute, in a *ContainerError whose Err is the
// hcsshim sentinel that means the same.
func (c *container) error(op string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case errors.Is(err, compute.ErrNotFound):
		sentinel = ErrComputeSystemDoesNotExist
	case errors.Is(err, compute.ErrStopped):
		sentinel = ErrVmcomputeAlreadyStopped
	case errors.Is(err, compute.ErrInvalidState):
		sentinel = ErrVmcomputeOperationInvalidState
	case errors.Is(err, compute.ErrTimeout):
		sentinel = ErrTimeout
	case errors.Is(err, compute.ErrMonitorLost):
		sentinel = ErrUnexpectedProcessAbort
	}
	if sentinel == nil {
		return &ContainerError{Container: c, Operation: op, Err: err}
	}
	return &ContainerError{Container: c, Operation: op, Err: sentinel, ExtraInfo: err.Error()}
}

func (c *container) check(op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return &ContainerError{Container: c, Operation: op, Err: ErrHandleClose, ExtraInfo: "the handle is closed"}
	}
	return nil
}

// Start starts the container. The first process CreateProcess makes after it is
// the container's init process.
func (c *container) Start() error {
	const op = "hcsshim::ComputeSystem::Start"
	if err := c.check(op); err != nil {
		return err
	}
	info, err := c.c.Info(context.Background())
	if err != nil {
		return c.error(op, err)
	}
	if info.Status == compute.StatusStopped {
		return c.error(op, compute.ErrStopped)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || info.Status != compute.StatusCreated {
		return &ContainerError{Container: c, Operation: op, Err: ErrVmcomputeOperationInvalidState, ExtraInfo: "the container has been started already"}
	}
	c.started = true
	return nil
}

// Shutdown sends SIGTERM to the container's init process; the container's
// monitor sends SIGKILL after ShutdownTimeout. As in hcsshim it returns a
// *ContainerError with ErrVmcomputeOperationPending: Wait for the end.
func (c *container) Shutdown() error {
	const op = "hcsshim::ComputeSystem::Shutdown"
	if err := c.check(op); err != nil {
		return err
	}
	if err := c.c.Shutdown(context.Background(), ShutdownTimeout); err != nil {
		return c.error(op, err)
	}
	return &ContainerError{Container: c, Operation: op, Err: ErrVmcomputeOperationPending}
}

// Terminate kills the container's processes (SIGKILL to its init). As in
// hcsshim it returns a *ContainerError with ErrVmcomputeOperationPending.
func (c *container) Terminate() error {
	const op = "hcsshim::ComputeSystem::Terminate"
	if err := c.check(op); err != nil {
		return err
	}
	if err := c.c.Kill(context.Background()); err != nil {
		return c.error(op, err)
	}
	return &ContainerError{Container: c, Operation: op, Err: ErrVmcomputeOperationPending}
}

// Wait waits until the container has stopped and released its root file
// system. An init process killed by the OOM killer gives ErrOOMKilled.
func (c *container) Wait() error { return c.wait(context.Background()) }

// WaitTimeout is Wait for at most d; it then gives ErrTimeout.
func (c *container) WaitTimeout(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.wait(ctx)
}

func (c *container) wait(ctx context.Context) error {
	const op = "hcsshim::ComputeSystem::Wait"
	if err := c.check(op); err != nil {
		return err
	}
	e, err := c.c.Wait(ctx)
	if err != nil {
		return c.error(op, err)
	}
	if e != nil && e.OOM {
		return &ContainerError{Container: c, Operation: op, Err: ErrOOMKilled}
	}
	return nil
}

// Pause freezes the container's processes.
func (c *container) Pause() error {
	const op = "hcsshim::ComputeSystem::Pause"
	if err := c.check(op); err != nil {
		return err
	}
	return c.error(op, c.c.Pause(context.Background()))
}

// Resume thaws the container's processes.
func (c *container) Resume() error {
	const op = "hcsshim::ComputeSystem::Resume"
	if err := c.check(op); err != nil {
		return err
	}
	return c.error(op, c.c.Resume(context.Background()))
}

// HasPendingUpdates is always false: Linux containers have no pending updates.
func (c *container) HasPendingUpdates() (bool, error) {
	if err := c.check("hcsshim::ComputeSystem::HasPendingUpdates"); err != nil {
		return false, err
	}
	return false, nil
}

// Statistics reads the container's cgroups.
func (c *container) Statistics() (Statistics, error) {
	const op = "hcsshim::ComputeSystem::Statistics"
	if err := c.check(op); err != nil {
		return Statistics{}, err
	}
	s, err := c.c.Stats(context.Background())
	if err != nil {
		return Statistics{}, c.error(op, err)
	}
	st := Statistics{
		Timestamp:          s.Time,
		ContainerStartTime: s.Started,
		Memory:             MemoryStats{UsageCommitBytes: s.MemoryUsage, UsageCommitPeakBytes: s.MemoryPeak, UsagePrivateWorkingSetBytes: s.MemoryPrivate},
		Processor:          ProcessorStats{TotalRuntime100ns: s.CPUTotal / 100, RuntimeUser100ns: s.CPUUser / 100, RuntimeKernel100ns: s.CPUKernel / 100},
		Storage:            StorageStats{ReadCountNormalized: s.ReadOps, ReadSizeBytes: s.ReadBytes, WriteCountNormalized: s.WriteOps, WriteSizeBytes: s.WriteBytes},
	}
	if !s.Started.IsZero() {
		st.Uptime100ns = uint64(s.Time.Sub(s.Started) / 100)
	}
	st.Network = endpointStatistics(c.c.Config().Endpoints)
	return st, nil
}

// CreateProcess starts a process in the container: its init process the first
// time after Start, `runc exec` afterwards.
func (c *container) CreateProcess(pc *ProcessConfig) (Process, error) {
	const op = "hcsshim::ComputeSystem::CreateProcess"
	if err := c.check(op); err != nil {
		return nil, err
	}
	if pc == nil {
		return nil, c.error(op, fmt.Errorf("%w: nil process configuration", compute.ErrInvalidArgument))
	}
	args, err := compute.SplitCommandLine(pc.CommandLine)
	if err != nil {
		return nil, c.error(op, err)
	}
	if pc.ApplicationName != "" {
		if len(args) == 0 {
			args = []string{pc.ApplicationName}
		} else {
			args[0] = pc.ApplicationName
		}
	}
	if len(args) == 0 {
		return nil, c.error(op, fmt.Errorf("%w: empty CommandLine", compute.ErrInvalidArgument))
	}
	spec := &compute.ProcessSpec{Args: args, Cwd: pc.WorkingDirectory, Terminal: pc.EmulateConsole}
	keys := make([]string, 0, len(pc.Environment))
	for k := range pc.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		spec.Env = append(spec.Env, k+"="+pc.Environment[k])
	}
	if pc.EmulateConsole {
		if pc.ConsoleSize[0] < 0 || pc.ConsoleSize[1] < 0 || pc.ConsoleSize[0] > 0xffff || pc.ConsoleSize[1] > 0xffff {
			return nil, c.error(op, fmt.Errorf("%w: ConsoleSize %v", compute.ErrInvalidArgument, pc.ConsoleSize))
		}
		spec.ConsoleHeight, spec.ConsoleWidth = uint16(pc.ConsoleSize[0]), uint16(pc.ConsoleSize[1])
	}
	p := &process{c: c}
	var child []*os.File
	defer func() {
		for _, f := range child {
			f.Close()
		}
	}()
	if !pc.EmulateConsole {
		if pc.CreateStdInPipe {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, c.error(op, err)
			}
			spec.Stdin, p.stdin, child = r, w, append(child, r)
		}
		if pc.CreateStdOutPipe {
			r, w, err := os.Pipe()
			if err != nil {
				p.closeAll()
				return nil, c.error(op, err)
			}
			spec.Stdout, p.stdout, child = w, r, append(child, w)
		}
		if pc.CreateStdErrPipe {
			r, w, err := os.Pipe()
			if err != nil {
				p.closeAll()
				return nil, c.error(op, err)
			}
			spec.Stderr, p.stderr, child = w, r, append(child, w)
		}
	}
	info, err := c.c.Info(context.Background())
	if err != nil {
		p.closeAll()
		return nil, c.error(op, err)
	}
	var cp *compute.Process
	switch {
	case info.Status == compute.StatusStopped:
		err = compute.ErrStopped
	case info.Status == compute.StatusCreated:
		c.mu.Lock()
		started := c.started
		c.mu.Unlock()
		if !started {
			err = fmt.Errorf("%w: the container has not been started", compute.ErrInvalidState)
			break
		}
		cp, err = c.c.Start(context.Background(), spec)
	default:
		cp, err = c.c.Exec(context.Background(), spec)
	}
	if err != nil {
		p.closeAll()
		return nil, c.error(op, err)
	}
	p.p = cp
	if cp.Console != nil {
		p.stdin, p.stdout = cp.Console, cp.Console
	}
	return p, nil
}

// OpenProcess returns a process of the container, one that any process started.
// Its Stdio is not available (it belongs to the handle that made it).
func (c *container) OpenProcess(pid int) (Process, error) {
	const op = "hcsshim::ComputeSystem::OpenProcess"
	if err := c.check(op); err != nil {
		return nil, err
	}
	cp, err := c.c.OpenProcess(pid)
	if err != nil {
		if errors.Is(err, compute.ErrNotFound) {
			return nil, &ContainerError{Container: c, Operation: op, Err: ErrElementNotFound, ExtraInfo: err.Error()}
		}
		return nil, c.error(op, err)
	}
	return &process{c: c, p: cp}, nil
}

// Close releases the handle. A stopped container is removed with its last
// record (as HCS drops a stopped compute system once it is closed); a running
// one keeps running and OpenContainer finds it again.
func (c *container) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if c.c.Stopped() {
		if err := c.c.Delete(context.Background(), false); err != nil && !errors.Is(err, compute.ErrNotFound) {
			return c.error("hcsshim::ComputeSystem::Close", err)
		}
	}
	return nil
}

// MaybeRunHelper runs a container's monitor and exits if this process was
// started as one; otherwise it returns at once. Programs that create
// containers call it first in main (and in TestMain): the monitor is the
// program re-executed.
func MaybeRunHelper() { compute.MaybeRunHelper() }
