package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Row is one line of the results table: the same work done by a peer tool and by
// hostcompute on the same input, timed in pairs.
//
// For each pair the runner makes two new, empty directories on the work disk and runs
// the peer's commands in the first and ours in the second, peer first. It syncs the
// filesystem after each side, so that neither pays for the other's dirty pages, and
// after the pair drops the runs' files from the page cache, so that every pair
// starts with the same memory free.
//
// Deletions are kept away from the timed runs. On ext4 without a journal, the inode
// allocator skips inodes freed less than a minute ago, checking each one, so creating
// files right after deleting many is several times slower, and more so the more were
// deleted. The runner therefore keeps every run's directory until the row ends, when
// the disk has room for them, and starts a row marked ManyFiles only once a minute
// has passed since the last deletion (see Env.cooldown). Without room it removes both
// directories of a pair after the pair and says so in the notes.
type Row struct {
	Name string
	// ManyFiles says that each run creates many files, so the row waits for the
	// cooldown after earlier deletions.
	ManyFiles bool
	// Setup prepares what both sides need: inputs, peer binaries, a source tree. dir is
	// a directory for the row's own files, removed when the row ends. Setup is not
	// timed. Optional.
	Setup func(ctx context.Context, env *Env, dir string) (Setup, error)
	Peer  Side
	Ours  Side
	// Verdict, if set, gets the finished result and returns extra notes, such as
	// whether a goal was met.
	Verdict func(res *Result) []string
	// Teardown, if set, runs when the row ends, whatever happened, before its
	// directory is removed: it releases what Setup holds (mounts, activations).
	Teardown func(env *Env) error
}

// Setup describes a row's input.
type Setup struct {
	Input string // what one run processes, for the parameters list
	// Bytes is what one run processes, for MB/s (0 leaves MB/s out), and the estimate
	// of what one run writes, to decide whether all runs' output fits on the disk.
	Bytes int64
	Warm  []string // files read before every pair so that both sides find them cached
	Notes []string // added to the row's notes
}

// Side is one of the two programs a row compares.
type Side struct {
	Name string // shown in the table, e.g. "GNU tar -x + sync -f"
	// Prepare returns the commands of run number run (0-based). dir is a new empty
	// directory for this run's output, removed when the row ends (or after the pair,
	// when the disk cannot hold every run).
	Prepare func(ctx context.Context, env *Env, run int, dir string) (*Run, error)
}

// Run is one timed execution of a side.
type Run struct {
	// Cmds run one after another and are timed together, from the first start to the
	// last exit; make them with Env.command. A command's stderr is kept for errors
	// unless the side sets it.
	Cmds []*exec.Cmd
	// Check, if set, runs untimed right after the commands succeeded, for example to
	// look at the output before it is removed.
	Check func() error
	// Cleanup, if set, runs untimed after both sides of the pair ran, before the
	// run's directory is removed (which may be later).
	Cleanup func() error
	// MaxRSS, if set, gives the run's peak RSS in place of its largest command's:
	// for a pipeline whose largest process (an input generator, say) is not the
	// one the row measures. It runs after the commands, before Check.
	MaxRSS func() (int64, error)
}

// Sample is the measurement of one Run.
type Sample struct {
	Wall   time.Duration // first start to last exit
	CPU    time.Duration // user + system time of all commands
	MaxRSS int64         // peak resident set of the largest command, bytes
}

// Result is a finished, failed or interrupted row.
type Result struct {
	Row   *Row
	Setup Setup
	Peer  []Sample
	Ours  []Sample
	Notes []string
	Err   error
}

// runRow runs the pairs of r. Failures are recorded in the result, not returned.
func runRow(ctx context.Context, env *Env, r *Row, index int) *Result {
	res := &Result{Row: r}
	dir := filepath.Join(env.Work, fmt.Sprintf("row%02d", index+1))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Err = err
		return res
	}
	defer func() {
		if r.Teardown != nil {
			if err := r.Teardown(env); err != nil {
				env.logf("releasing %s: %v", r.Name, err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			env.logf("removing %s: %v", dir, err)
		}
		syncAll()
		if r.ManyFiles {
			env.deleted()
		}
	}()
	if r.Setup != nil {
		setupDir := filepath.Join(dir, "setup")
		if err := os.Mkdir(setupDir, 0o755); err != nil {
			res.Err = err
			return res
		}
		s, err := r.Setup(ctx, env, setupDir)
		if err != nil {
			res.Err = fmt.Errorf("setup: %w", err)
			return res
		}
		res.Setup = s
		res.Notes = append(res.Notes, s.Notes...)
	}
	syncAll()
	keep := true
	if need := int64(2*env.Pairs) * (res.Setup.Bytes + res.Setup.Bytes/4 + 64<<20); need > freeSpace(dir)-(2<<30) {
		keep = false
		res.Notes = append(res.Notes, fmt.Sprintf("runs deleted after each pair: keeping all needs %s", sizeIEC(need)))
	}
	if r.ManyFiles {
		if err := env.cooldown(ctx); err != nil {
			res.Err = err
			return res
		}
	}
	for i := range env.Pairs {
		err := runPair(ctx, env, r, res, i, dir, keep)
		syncAll()
		if err != nil {
			res.Err = err
			break
		}
		env.logf("  pair %d/%d: %s %s, %s %s", i+1, env.Pairs,
			r.Peer.Name, seconds(res.Peer[i].Wall), r.Ours.Name, seconds(res.Ours[i].Wall))
	}
	if r.Verdict != nil && res.Err == nil {
		res.Notes = append(res.Notes, r.Verdict(res)...)
	}
	return res
}

// runPair runs pair i of r, peer then ours, and adds their samples to res. Unless
// keep is set, it removes both runs' directories afterwards.
func runPair(ctx context.Context, env *Env, r *Row, res *Result, i int, dir string, keep bool) error {
	for _, f := range res.Setup.Warm {
		if err := readAll(ctx, f); err != nil {
			return fmt.Errorf("warming %s: %w", f, err)
		}
	}
	memoryNeed := res.Setup.Bytes + res.Setup.Bytes/4 + 256<<20
	peer, err := measure(ctx, env, r.Peer, i, filepath.Join(dir, fmt.Sprintf("peer-%d", i+1)), memoryNeed)
	if err != nil {
		return err
	}
	defer peer.cleanup(!keep)
	res.Peer = append(res.Peer, peer.sample)
	syncAll()
	ours, err := measure(ctx, env, r.Ours, i, filepath.Join(dir, fmt.Sprintf("ours-%d", i+1)), memoryNeed)
	if err != nil {
		return err
	}
	res.Ours = append(res.Ours, ours.sample)
	err = ours.cleanup(!keep)
	if perr := peer.cleanup(!keep); err == nil {
		err = perr
	}
	syncAll()
	switch {
	case keep:
		// The outputs stay on disk but leave the page cache, so that every pair
		// starts with the same memory free.
		evictTree(peer.dir)
		evictTree(ours.dir)
	case r.ManyFiles:
		env.deleted()
	}
	return err
}

type measured struct {
	sample  Sample
	dir     string
	run     *Run
	cleaned bool
}

// cleanup runs the side's Cleanup and, with remove, removes its directory.
func (m *measured) cleanup(remove bool) error {
	if m.cleaned {
		return nil
	}
	m.cleaned = true
	var err error
	if m.run != nil && m.run.Cleanup != nil {
		err = m.run.Cleanup()
	}
	if remove {
		if rerr := os.RemoveAll(m.dir); err == nil {
			err = rerr
		}
	}
	return err
}

// measure prepares and times one run of side s. On machines with free page reporting
// it first makes memoryNeed bytes of free memory resident (see prefault). On error
// the run's directory is already removed.
func measure(ctx context.Context, env *Env, s Side, run int, dir string, memoryNeed int64) (_ *measured, err error) {
	m := &measured{dir: dir}
	defer func() {
		if err != nil {
			m.cleanup(true)
			err = fmt.Errorf("%s, run %d: %w", s.Name, run+1, err)
		}
	}()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	m.run, err = s.Prepare(ctx, env, run, dir)
	if err != nil {
		return nil, err
	}
	cmds := make([]*measuredCmd, len(m.run.Cmds))
	for i, c := range m.run.Cmds {
		if cmds[i], err = env.wrap(c); err != nil {
			return nil, err
		}
		defer os.Remove(cmds[i].rssFile)
	}
	if env.Prefault {
		prefault(memoryNeed)
	}
	start := time.Now()
	for _, c := range cmds {
		if err := c.cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			msg := ""
			if c.stderr != nil {
				msg = strings.TrimSpace(c.stderr.String())
			}
			return nil, fmt.Errorf("%s: %w\n%s", strings.Join(c.args, " "), err, msg)
		}
	}
	m.sample.Wall = time.Since(start)
	for _, c := range cmds {
		rss, err := c.maxRSS()
		if err != nil {
			return nil, err
		}
		m.sample.CPU += cpuTime(c.cmd.ProcessState)
		m.sample.MaxRSS = max(m.sample.MaxRSS, rss)
	}
	if m.run.MaxRSS != nil {
		if m.sample.MaxRSS, err = m.run.MaxRSS(); err != nil {
			return nil, fmt.Errorf("peak RSS: %w", err)
		}
	}
	if m.run.Check != nil {
		if err := m.run.Check(); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
	}
	return m, nil
}

// command makes a command for a Run. It gets its own process group, which ctx kills.
// Its stdout is discarded unless the caller sets it.
func (env *Env) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 10 * time.Second
	return c
}

// measuredCmd is a command of a Run started under GNU time.
//
// The peak RSS that wait4 reports for a child of a Go program is wrong: os/exec
// starts children with clone(CLONE_VM|CLONE_VFORK), so the child runs on the
// parent's address space until execve, and execve records that address space's high
// water mark in the child's maxrss. Every child would show at least the harness's own
// peak. GNU time fork()s: its child starts from a copy of time's small address space,
// and time reports the child's own peak.
type measuredCmd struct {
	cmd     *exec.Cmd
	args    []string // the command as the row wrote it, for messages
	rssFile string   // where time writes the peak RSS in KiB
	stderr  *tailBuffer
}

// wrap rewrites c to run under GNU time.
func (env *Env) wrap(c *exec.Cmd) (*measuredCmd, error) {
	if c.Err != nil {
		return nil, c.Err
	}
	f, err := os.CreateTemp(env.Work, "rss-")
	if err != nil {
		return nil, err
	}
	f.Close()
	m := &measuredCmd{cmd: c, args: c.Args, rssFile: f.Name()}
	c.Args = append(append(env.timeArgs(m.rssFile), c.Path), c.Args[1:]...)
	c.Path = env.Time
	if c.Stderr == nil {
		m.stderr = &tailBuffer{max: 4 << 10}
		c.Stderr = m.stderr
	}
	return m, nil
}

// maxRSS reads the peak RSS that time wrote, in bytes.
func (m *measuredCmd) maxRSS() (int64, error) {
	rss, err := readTimeRSS(m.rssFile)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", strings.Join(m.args, " "), err)
	}
	return rss, nil
}

// timeArgs is the GNU time command line, up to the measured command, that
// writes the command's peak RSS to file (read back with readTimeRSS).
func (env *Env) timeArgs(file string) []string {
	return []string{env.Time, "--quiet", "--format=%M", "--output=" + file, "--"}
}

// readTimeRSS reads the peak RSS that GNU time --format=%M wrote to file (in
// KiB, on its last line), in bytes.
func readTimeRSS(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	lines := strings.Fields(string(b))
	if len(lines) == 0 {
		return 0, fmt.Errorf("time wrote no peak RSS to %s", file)
	}
	kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("peak RSS from time: %w", err)
	}
	return kib << 10, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// readAll reads a file to the end, leaving it in the page cache.
func readAll(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := f.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Statistics over samples.

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func walls(s []Sample) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = x.Wall
	}
	return out
}

func cpus(s []Sample) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = x.CPU
	}
	return out
}

func maxRSS(s []Sample) int64 {
	var m int64
	for _, x := range s {
		m = max(m, x.MaxRSS)
	}
	return m
}

// fixture returns the directory that build makes, under name in the work directory,
// calling build only on first use. Fixtures are shared between rows and removed with
// the work directory at the end, so that no row pays for deleting them.
func (env *Env) fixture(name string, build func(dir string) error) (string, error) {
	dir := filepath.Join(env.Work, "fixtures", name)
	if env.fixtures[name] {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if err := build(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if env.fixtures == nil {
		env.fixtures = make(map[string]bool)
	}
	env.fixtures[name] = true
	return dir, nil
}

// deleteCooldown is how long after a deletion ext4 without a journal still skips the
// freed inodes (RECENTCY_MIN in fs/ext4/ialloc.c, for inode tables already written
// back), with a margin.
const deleteCooldown = 62 * time.Second

// deleted records that files were just deleted on the work disk, here and in a file
// beside the work directories for the next invocation.
func (env *Env) deleted() {
	env.lastDelete = time.Now()
	if env.deleteStamp != "" {
		os.WriteFile(env.deleteStamp, []byte(env.lastDelete.Format(time.RFC3339Nano)+"\n"), 0o644)
	}
}

// loadDeleted reads the time of the last deletion an earlier invocation recorded.
func (env *Env) loadDeleted() {
	b, err := os.ReadFile(env.deleteStamp)
	if err != nil {
		return
	}
	if t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b))); err == nil && t.After(env.lastDelete) {
		env.lastDelete = t
	}
}

// cooldown waits until deleteCooldown has passed since the last deletion, when the
// work filesystem needs it (env.Cooldown) and this is not a quick run.
func (env *Env) cooldown(ctx context.Context) error {
	if !env.Cooldown || env.Quick {
		return nil
	}
	wait := time.Until(env.lastDelete.Add(deleteCooldown))
	if wait <= 0 {
		return nil
	}
	env.logf("  waiting %s: inodes freed in the last minute make file creation slow on ext4 without a journal", wait.Round(time.Second))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
