package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/containerd/console"
	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/compute"
	"github.com/hostcompute/hostcompute/store"
)

const containerStateHelp = `State is kept in compute/ of the state root ($HOSTCOMPUTE_STATE_DIR, default /run/hostcompute;
$HOSTCOMPUTE_COMPUTE_STATE_DIR overrides),
with runc's under its runc/ directory. Each container has a monitor process (this
program re-executed) that reaps its processes and records their exits, so a
container outlives the command that made it. Needs root and runc.`

// processExit is the exit status of an attached process, which the command
// exits with.
type processExit int

func (e processExit) Error() string { return "the process exited with status " + strconv.Itoa(int(e)) }

func (a *app) newContainerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container",
		Short: "Run Linux containers from layer stacks (runc)",
		Long: `Create and drive containers as hcsshim's compute API does, with runc: the root is
a scratch folder over read-only layers (ext4 layer images, directory layers, or
Windows layer folders whose Files/ hold Linux files); the first process started
is the container's init, and the container stops when it exits.

` + containerStateHelp,
	}
	cmd.AddCommand(a.newContainerCreateCommand(), a.newContainerStartCommand(), a.newContainerExecCommand(),
		a.newContainerPsCommand(), a.newContainerStatsCommand(), a.newContainerPauseCommand(true),
		a.newContainerPauseCommand(false), a.newContainerStopCommand(), a.newContainerKillCommand(),
		a.newContainerRmCommand(), a.newContainerLsCommand(), a.newContainerInspectCommand())
	return cmd
}

// containerFlags are the configuration flags of create and run.
type containerFlags struct {
	layers      []string
	scratch     string
	scratchSize string
	hostname    string
	mounts      []string
	memory      string
	cpus        uint32
	cpuWeight   uint64
	cpuMax      int64
	iops        uint64
	bps         string
	netns       string
}

func (f *containerFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.layers, "layer", "l", nil, "read-only `LAYER`, top-most first (repeat): an ext4 image, a folder with layer.vhd, a directory, or a Windows layer folder")
	fl.StringVar(&f.scratch, "scratch", "", "the writable scratch `FOLDER` (LayerFolderPath)")
	fl.StringVar(&f.scratchSize, "scratch-size", "", "`SIZE` of the scratch disk over ext4 layers (K, M, G suffixes)")
	fl.StringVar(&f.hostname, "hostname", "", "the container's host `NAME`")
	fl.StringArrayVarP(&f.mounts, "mount", "v", nil, "map a host directory: `SRC:DST[:ro]` (repeat)")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit `SIZE`, swap included (K, M, G suffixes)")
	fl.Uint32Var(&f.cpus, "cpus", 0, "run on the first `N` processors")
	fl.Uint64Var(&f.cpuWeight, "cpu-weight", 0, "relative processor `WEIGHT` 1..10000")
	fl.Int64Var(&f.cpuMax, "cpu-max", 0, "processor maximum, `PERCENT` 1..100 of the host's total")
	fl.Uint64Var(&f.iops, "iops", 0, "storage operations per second on the scratch's disk")
	fl.StringVar(&f.bps, "bps", "", "storage bytes per second on the scratch's disk (K, M, G suffixes)")
	fl.StringVar(&f.netns, "netns", "", "join the network namespace at `PATH` (default: a namespace of its own, loopback only)")
}

func (f *containerFlags) config(id string) (compute.Config, error) {
	cfg := compute.Config{ID: id, Scratch: f.scratch, Hostname: f.hostname, NetNS: f.netns}
	if len(f.layers) == 0 {
		return cfg, usageErrorf("no --layer (or, for hcs run, --image) given")
	}
	for _, l := range f.layers {
		abs, err := filepath.Abs(l)
		if err != nil {
			return cfg, err
		}
		cfg.Layers = append(cfg.Layers, compute.Layer{ID: filepath.Base(l), Path: abs})
	}
	for _, m := range f.mounts {
		parts := strings.Split(m, ":")
		if len(parts) < 2 || len(parts) > 3 || len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
			return cfg, usageErrorf("--mount %q: want SRC:DST[:ro]", m)
		}
		cfg.Mounts = append(cfg.Mounts, compute.Mount{Source: parts[0], Destination: parts[1], ReadOnly: len(parts) == 3 && parts[2] == "ro"})
	}
	sizes := []struct {
		flag, v string
		set     func(int64)
	}{
		{"scratch-size", f.scratchSize, func(n int64) { cfg.ScratchSize = uint64(n) }},
		{"memory", f.memory, func(n int64) { cfg.MemoryBytes = n }},
		{"bps", f.bps, func(n int64) { cfg.BandwidthMaximum = uint64(n) }},
	}
	for _, s := range sizes {
		if s.v == "" {
			continue
		}
		n, err := parseSize(s.v)
		if err != nil {
			return cfg, usageErrorf("--%s: %v", s.flag, err)
		}
		s.set(n)
	}
	cfg.CPUCount, cfg.CPUWeight, cfg.CPUMaximum, cfg.IOPSMaximum = f.cpus, f.cpuWeight, f.cpuMax, f.iops
	return cfg, nil
}

func (a *app) newContainerCreateCommand() *cobra.Command {
	var f containerFlags
	cmd := &cobra.Command{
		Use:   "create [flags] --layer LAYER... --scratch FOLDER ID",
		Short: "Create a container (no process yet)",
		Long: `Create a container: prepare its root (the scratch over the layers), write its
OCI bundle and start its monitor. Start runs its first process. An ID in use
gives exit code 4.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(args[0])
			if err != nil {
				return err
			}
			if cfg.Scratch == "" {
				return usageErrorf("no --scratch given")
			}
			c, err := compute.Create(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			info, err := c.Info(cmd.Context())
			if err != nil {
				return err
			}
			return a.result(c.ID(), containerJSONOf(info))
		}),
	}
	f.register(cmd)
	return cmd
}

// processFlags are the flags of a process to start.
type processFlags struct {
	tty, interactive, detach bool
	env                      []string
	cwd                      string
}

func (p *processFlags) register(cmd *cobra.Command, detachDefault bool) {
	fl := cmd.Flags()
	fl.BoolVarP(&p.tty, "tty", "t", false, "give the process a terminal (this terminal, raw, resized with it)")
	fl.BoolVarP(&p.interactive, "interactive", "i", false, "connect standard input")
	fl.StringArrayVarP(&p.env, "env", "e", nil, "environment `KEY=VALUE` (repeat)")
	fl.StringVarP(&p.cwd, "workdir", "w", "", "working `DIR` in the container")
	if detachDefault {
		fl.BoolVarP(&p.detach, "detach", "d", true, "do not wait for the process (its output goes to /dev/null)")
	} else {
		fl.BoolVarP(&p.detach, "detach", "d", false, "print the process ID and return at once")
	}
}

func (a *app) newContainerStartCommand() *cobra.Command {
	var p processFlags
	var attach bool
	cmd := &cobra.Command{
		Use:   "start [flags] ID -- COMMAND [ARG...]",
		Short: "Start a container's first process (its init)",
		Long: `Start the container's first process (runc run --detach). The container
stops when it exits. By default the process is detached and its ID printed;
with --attach (-a) its standard streams are this command's and the command
exits with its exit status.`,
		Args: cobra.MinimumNArgs(2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if attach {
				p.detach = false
			}
			c, err := compute.Open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.runProcess(cmd.Context(), c, true, &p, args[1:])
		}),
	}
	p.register(cmd, true)
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach the standard streams and wait for the exit")
	return cmd
}

func (a *app) newContainerExecCommand() *cobra.Command {
	var p processFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] ID -- COMMAND [ARG...]",
		Short: "Run another process in a running container (runc exec)",
		Long: `Run a process in the running container, attached: its standard streams are this
command's and the command exits with its exit status (--detach: print its ID
and return).`,
		Args: cobra.MinimumNArgs(2),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			c, err := compute.Open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.runProcess(cmd.Context(), c, false, &p, args[1:])
		}),
	}
	p.register(cmd, false)
	return cmd
}

// runProcess starts args in c (as its init or with exec), attached unless
// detached, and returns processExit for a non-zero exit status.
func (a *app) runProcess(ctx context.Context, c *compute.Container, init bool, pf *processFlags, args []string) error {
	spec := &compute.ProcessSpec{Args: args, Env: pf.env, Cwd: pf.cwd}
	var cons console.Console
	var closers []*os.File
	defer func() {
		for _, f := range closers {
			f.Close()
		}
	}()
	if pf.tty && !pf.detach {
		cur, err := console.ConsoleFromFile(os.Stdin)
		if err != nil {
			return usageErrorf("--tty needs a terminal on standard input: %v", err)
		}
		cons = cur
		spec.Terminal = true
		if sz, err := cons.Size(); err == nil {
			spec.ConsoleWidth, spec.ConsoleHeight = sz.Width, sz.Height
		}
	} else if pf.tty {
		spec.Terminal = true
	}
	var copies []chan struct{}
	if !pf.detach && !spec.Terminal {
		if pf.interactive {
			in, done, err := fileFor(a.stdin, true)
			if err != nil {
				return err
			}
			spec.Stdin, closers = in, append(closers, in)
			copies = append(copies, done)
		}
		out, done, err := writerFile(a.stdout)
		if err != nil {
			return err
		}
		spec.Stdout, closers = out, append(closers, out)
		copies = append(copies, done)
		errf, done, err := writerFile(a.stderr)
		if err != nil {
			return err
		}
		spec.Stderr, closers = errf, append(closers, errf)
		copies = append(copies, done)
	}
	var (
		proc *compute.Process
		err  error
	)
	if init {
		proc, err = c.Start(ctx, spec)
	} else {
		proc, err = c.Exec(ctx, spec)
	}
	// The process has its own copies now.
	for _, f := range closers {
		f.Close()
	}
	closers = nil
	if err != nil {
		return err
	}
	if pf.detach {
		if proc.Console != nil {
			proc.Console.Close()
		}
		return a.result(strconv.Itoa(proc.Pid()), map[string]any{"containerID": c.ID(), "pid": proc.Pid()})
	}
	if proc.Console != nil {
		defer proc.Console.Close()
		if restore, err := rawTerminal(int(os.Stdin.Fd())); err == nil {
			defer restore()
		}
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if sz, err := cons.Size(); err == nil {
					proc.Resize(context.Background(), sz.Width, sz.Height)
				}
			}
		}()
		go io.Copy(proc.Console, cons)
		done := make(chan struct{})
		go func() { io.Copy(cons, proc.Console); close(done) }()
		copies = append(copies, done)
	}
	e, err := proc.Wait(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	for _, d := range copies {
		select {
		case <-d:
		case <-time.After(2 * time.Second):
		}
	}
	if e.OOM {
		fmt.Fprintln(a.stderr, "hcs: the process was killed by the out-of-memory killer (memory limit reached)")
	}
	if e.Code != 0 {
		return processExit(e.Code)
	}
	return nil
}

// fileFor returns a file the process reads r from: r itself when it is a file,
// otherwise a pipe fed from r (done is closed when the copy ends).
func fileFor(r io.Reader, _ bool) (*os.File, chan struct{}, error) {
	done := make(chan struct{})
	if f, ok := r.(*os.File); ok {
		close(done)
		return dupFile(f)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	go func() { io.Copy(pw, r); pw.Close(); close(done) }()
	return pr, done, nil
}

// writerFile returns a file the process writes w's content to.
func writerFile(w io.Writer) (*os.File, chan struct{}, error) {
	done := make(chan struct{})
	if f, ok := w.(*os.File); ok {
		close(done)
		return dupFile(f)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	go func() { io.Copy(w, pr); pr.Close(); close(done) }()
	return pw, done, nil
}

func dupFile(f *os.File) (*os.File, chan struct{}, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, nil, err
	}
	syscall.CloseOnExec(fd)
	done := make(chan struct{})
	close(done)
	return os.NewFile(uintptr(fd), f.Name()), done, nil
}

// containerJSON is a container in -o json.
type containerJSON struct {
	ContainerID  string        `json:"containerID"`
	Status       string        `json:"status"`
	InitPID      int           `json:"initPID,omitempty"`
	CreationTime string        `json:"creationTime"`
	StartTime    string        `json:"startTime,omitempty"`
	Rootfs       string        `json:"rootfs"`
	Bundle       string        `json:"bundle"`
	Scratch      string        `json:"scratch"`
	Layers       []string      `json:"layers"`
	Hostname     string        `json:"hostname,omitempty"`
	Exit         *exitJSON     `json:"exit,omitempty"`
	Processes    []processJSON `json:"processes"`
}

type exitJSON struct {
	ExitCode  int    `json:"exitCode"`
	Signal    int    `json:"signal,omitempty"`
	OOMKilled bool   `json:"oomKilled,omitempty"`
	ExitTime  string `json:"exitTime,omitempty"`
}

type processJSON struct {
	PID       int       `json:"pid"`
	Args      []string  `json:"args"`
	Init      bool      `json:"init"`
	Terminal  bool      `json:"terminal"`
	StartTime string    `json:"startTime"`
	Exit      *exitJSON `json:"exit,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func exitJSONOf(e *compute.Exit) *exitJSON {
	if e == nil {
		return nil
	}
	return &exitJSON{ExitCode: e.Code, Signal: e.Signal, OOMKilled: e.OOM, ExitTime: rfc3339(e.Time)}
}

func containerJSONOf(info *compute.Info) containerJSON {
	scratch, _ := filepath.Abs(info.Config.Scratch)
	j := containerJSON{ContainerID: info.ID, Status: string(info.Status), InitPID: info.InitPid, CreationTime: rfc3339(info.Created),
		StartTime: rfc3339(info.Started), Rootfs: info.Rootfs, Bundle: info.Bundle, Scratch: scratch, Hostname: info.Config.Hostname,
		Exit: exitJSONOf(info.Exit), Processes: []processJSON{}, Layers: []string{}}
	for _, l := range info.Config.Layers {
		j.Layers = append(j.Layers, l.Path)
	}
	for _, p := range info.Procs {
		j.Processes = append(j.Processes, processJSON{PID: p.Pid, Args: p.Args, Init: p.Init, Terminal: p.Terminal, StartTime: rfc3339(p.Started), Exit: exitJSONOf(p.Exit)})
	}
	return j
}

func (a *app) openContainer(ctx context.Context, id string) (*compute.Container, *compute.Info, error) {
	c, err := compute.Open(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	info, err := c.Info(ctx)
	return c, info, err
}

func (a *app) newContainerPsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ps ID",
		Short: "List a container's processes",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			_, info, err := a.openContainer(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			j := containerJSONOf(info)
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PID\tSTATUS\tCOMMAND")
			for _, p := range j.Processes {
				st := "running"
				if p.Exit != nil {
					st = "exited (" + strconv.Itoa(p.Exit.ExitCode) + ")"
				}
				if p.Init {
					st += ", init"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\n", p.PID, st, strings.Join(p.Args, " "))
			}
			tw.Flush()
			return a.result(strings.TrimSuffix(b.String(), "\n"), j.Processes)
		}),
	}
}

// statsJSON is a container's statistics in -o json.
type statsJSON struct {
	ContainerID        string  `json:"containerID"`
	StatsTime          string  `json:"statsTime"`
	MemoryUsageBytes   uint64  `json:"memoryUsageBytes"`
	MemoryPeakBytes    uint64  `json:"memoryPeakBytes"`
	MemoryPrivateBytes uint64  `json:"memoryPrivateBytes"`
	CPUSeconds         float64 `json:"cpuSeconds"`
	CPUUserSeconds     float64 `json:"cpuUserSeconds"`
	CPUKernelSeconds   float64 `json:"cpuKernelSeconds"`
	ReadOps            uint64  `json:"readOps"`
	ReadBytes          uint64  `json:"readBytes"`
	WriteOps           uint64  `json:"writeOps"`
	WriteBytes         uint64  `json:"writeBytes"`
}

func (a *app) newContainerStatsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats ID",
		Short: "Show a container's resource use (from its cgroups)",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			c, err := compute.Open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			s, err := c.Stats(cmd.Context())
			if err != nil {
				return err
			}
			j := statsJSON{ContainerID: c.ID(), StatsTime: rfc3339(s.Time), MemoryUsageBytes: s.MemoryUsage, MemoryPeakBytes: s.MemoryPeak,
				MemoryPrivateBytes: s.MemoryPrivate, CPUSeconds: float64(s.CPUTotal) / 1e9, CPUUserSeconds: float64(s.CPUUser) / 1e9,
				CPUKernelSeconds: float64(s.CPUKernel) / 1e9, ReadOps: s.ReadOps, ReadBytes: s.ReadBytes, WriteOps: s.WriteOps, WriteBytes: s.WriteBytes}
			text := fmt.Sprintf("memory %d bytes (peak %d, private %d)\ncpu %.3f s (user %.3f s, kernel %.3f s)\nread %d ops, %d bytes\nwrite %d ops, %d bytes",
				j.MemoryUsageBytes, j.MemoryPeakBytes, j.MemoryPrivateBytes, j.CPUSeconds, j.CPUUserSeconds, j.CPUKernelSeconds, j.ReadOps, j.ReadBytes, j.WriteOps, j.WriteBytes)
			return a.result(text, j)
		}),
	}
}

func (a *app) newContainerPauseCommand(pause bool) *cobra.Command {
	use, short := "resume ID", "Thaw a paused container"
	if pause {
		use, short = "pause ID", "Freeze a container's processes"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			c, err := compute.Open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if pause {
				err = c.Pause(cmd.Context())
			} else {
				err = c.Resume(cmd.Context())
			}
			if err != nil {
				return err
			}
			return a.stateResult(cmd.Context(), c)
		}),
	}
}

func (a *app) stateResult(ctx context.Context, c *compute.Container) error {
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	return a.result(c.ID()+" "+string(info.Status), containerJSONOf(info))
}

func (a *app) newContainerStopCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop [--timeout D] ID",
		Short: "Stop a container: SIGTERM to its init, SIGKILL after the timeout",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			c, err := compute.Open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := c.Shutdown(cmd.Context(), timeout); err != nil && !errors.Is(err, compute.ErrStopped) {
				return err
			}
			if _, err := c.Wait(cmd.Context()); err != nil {
				return err
			}
			return a.stateResult(cmd.Context(), c)
		}),
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long the init process has to exit after SIGTERM")
	return cmd
}

func (a *app) newContainerKillCommand() *cobra.Command {
	var sig string
	var pid int
	cmd := &cobra.Command{
		Use:   "kill [--signal SIG] [--pid PID] ID",
		Short: "Send a signal to a container's init (or one of its processes)",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := parseSignal(sig)
			if err != nil {
				return err
			}
			c, err := compute.Open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := c.Signal(cmd.Context(), pid, s); err != nil {
				return err
			}
			return a.result("", map[string]any{"containerID": c.ID(), "pid": pid, "signal": int(s)})
		}),
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "the `SIGNAL`: a name (TERM, SIGINT) or a number")
	cmd.Flags().IntVar(&pid, "pid", 0, "the process (default: the init process)")
	return cmd
}

func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	names := map[string]syscall.Signal{"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
		"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT, "WINCH": syscall.SIGWINCH}
	if sg, ok := names[strings.TrimPrefix(strings.ToUpper(s), "SIG")]; ok {
		return sg, nil
	}
	return 0, usageErrorf("unknown signal %q", s)
}

func (a *app) newContainerRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] ID...",
		Short: "Remove stopped (or, with -f, running) containers",
		Long: `Remove containers: their runc state, cgroups, root mounts and state directory.
The scratch folder stays (it is the caller's, as in hcsshim). A running
container is refused unless -f kills it first.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			var removed []string
			for _, id := range args {
				c, err := compute.Open(cmd.Context(), id)
				if err != nil {
					return err
				}
				if err := c.Delete(cmd.Context(), force); err != nil {
					return err
				}
				removed = append(removed, id)
			}
			return a.result(strings.Join(removed, "\n"), map[string]any{"removed": removed})
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}

func (a *app) newContainerLsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List containers (cleaning up those whose monitor died)",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ids, err := compute.List(cmd.Context())
			if err != nil {
				return err
			}
			all := []containerJSON{}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tINIT\tCREATED")
			for _, id := range ids {
				_, info, err := a.openContainer(cmd.Context(), id)
				if err != nil {
					continue // gone meanwhile
				}
				j := containerJSONOf(info)
				all = append(all, j)
				init := "-"
				if j.InitPID > 0 {
					init = strconv.Itoa(j.InitPID)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", j.ContainerID, j.Status, init, j.CreationTime)
			}
			tw.Flush()
			return a.result(strings.TrimSuffix(b.String(), "\n"), all)
		}),
	}
}

func (a *app) newContainerInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID",
		Short: "Show a container's configuration and state",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			_, info, err := a.openContainer(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			j := containerJSONOf(info)
			text := fmt.Sprintf("id %s\nstatus %s\nrootfs %s\nbundle %s\nscratch %s\nlayers %s", j.ContainerID, j.Status, j.Rootfs, j.Bundle, j.Scratch, strings.Join(j.Layers, " "))
			if j.InitPID > 0 {
				text += "\ninit " + strconv.Itoa(j.InitPID)
			}
			if j.Exit != nil {
				text += fmt.Sprintf("\nexit %d", j.Exit.ExitCode)
			}
			return a.result(text, j)
		}),
	}
}

// forwardSignals sends the first signal of sigs to c's init process and kills
// c at the second (or at the first when there is no init to take it), until
// stop is closed; killed then says whether it killed c.
func forwardSignals(c *compute.Container, sigs <-chan os.Signal, stop <-chan struct{}, killed chan<- bool) {
	ctx := context.Background()
	n, kill := 0, false
	for {
		select {
		case s := <-sigs:
			n++
			sig, _ := s.(syscall.Signal)
			if n == 1 {
				err := c.Signal(ctx, 0, sig)
				if err == nil || errors.Is(err, compute.ErrStopped) {
					continue
				}
			}
			kill = true
			c.Kill(ctx)
		case <-stop:
			killed <- kill
			return
		}
	}
}

func (a *app) newRunCommand() *cobra.Command {
	var (
		f    containerFlags
		p    processFlags
		name string
		keep bool
		img  string
		root string
	)
	cmd := &cobra.Command{
		Use:   "run [flags] --layer LAYER...|--image NAME -- COMMAND [ARG...]",
		Short: "Run a command in a new container and remove it afterwards",
		Long: `Create a container over the layers, run COMMAND as its init with this command's
standard streams (-t: this terminal, raw, resized with it; -i: standard input),
wait for it and remove the container (--keep leaves it). The exit status is the
command's. Without --scratch the scratch is a temporary folder, removed too.
This command is the container's monitor (no monitor process of its own).

SIGINT and SIGTERM go to COMMAND, as runc run forwards them (a PID 1 without a
handler ignores them); a second one kills the container, which is removed, and
the exit status is 130.

--image NAME runs a stored image (hcs image pull, append) of the store under
--root: its layers, unpacked in the layer store, are the container's read-only
layers (below any --layer). The image's config (entrypoint, environment) is not
applied: give COMMAND.

` + containerStateHelp,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id := name
			if id == "" {
				id = fmt.Sprintf("run-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
			}
			if f.scratch == "" {
				if keep {
					return usageErrorf("--keep needs --scratch")
				}
				d, err := os.MkdirTemp("", "hcs-run-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				f.scratch = filepath.Join(d, "scratch")
			}
			if img != "" {
				// The image's layers go under any --layer given.
				is, closeStore, err := a.openImages(ctx, &imageFlags{root: root})
				if err != nil {
					return err
				}
				dirs, err := is.LayerDirs(ctx, img)
				closeStore()
				if err != nil {
					return err
				}
				f.layers = append(f.layers, dirs...)
			}
			cfg, err := f.config(id)
			if err != nil {
				return err
			}
			// Signals go to the container's init, as runc run forwards them;
			// a second one kills the container, which is then removed.
			ownSignals.Store(true)
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, signals...)
			defer signal.Stop(sigs)
			// This command stays until the container has stopped, so it is
			// the container's monitor itself, as runc run without --detach
			// supervises its container: no monitor process to start.
			c, err := compute.Create(ctx, cfg, compute.InProcessMonitor())
			if err != nil {
				return err
			}
			if !keep {
				defer c.Delete(context.WithoutCancel(ctx), true)
			}
			stop := make(chan struct{})
			killed := make(chan bool, 1)
			go forwardSignals(c, sigs, stop, killed)
			p.detach = false
			// The first signal cancels ctx; from here on it is forwarded.
			err = a.runProcess(context.WithoutCancel(ctx), c, true, &p, args)
			close(stop)
			if <-killed {
				return fmt.Errorf("the container was killed: %w", context.Canceled)
			}
			return err
		}),
	}
	f.register(cmd)
	p.register(cmd, false)
	cmd.Flags().Lookup("detach").Hidden = true
	cmd.Flags().StringVar(&name, "name", "", "the container's `ID` (default: run-PID-N)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the stopped container (needs --scratch)")
	cmd.Flags().StringVar(&img, "image", "", "run the stored image `NAME`: its layers from the store under --root")
	cmd.Flags().StringVar(&root, "root", store.DefaultRoot, "with --image: the store's home `DIR` (as hcs image's)")
	return cmd
}
