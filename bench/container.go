package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// containerGoal is the goal for both rows: ours at most this many times
// the bare runc command.
const containerGoal = 1.1

// containerRows are the container rows: hcs run against runc run on the same
// bundle, and an exec in a running container against runc exec.
func containerRows(env *Env) []*Row {
	execs := 10
	if env.Quick {
		execs = 3
	}
	var (
		rootfs, bundle, runcRoot, state string
		execID                          = fmt.Sprintf("bench-exec-%d", os.Getpid())
		monitorRSS, monitorPSS          []int64
		shimRSS, shimPSS                int64
		shimErr                         error
	)
	ourEnv := func(c *exec.Cmd) *exec.Cmd {
		c.Env = append(os.Environ(), "HOSTCOMPUTE_COMPUTE_STATE_DIR="+state)
		return c
	}
	setup := func(ctx context.Context, env *Env, dir string) error {
		if os.Geteuid() != 0 {
			return fmt.Errorf("the container rows need root")
		}
		if _, err := exec.LookPath("runc"); err != nil {
			return fmt.Errorf("runc not installed (apt-get install runc): %w", err)
		}
		rootfs = filepath.Join(dir, "rootfs")
		if err := busyboxTree(rootfs); err != nil {
			return err
		}
		bundle = filepath.Join(dir, "bundle")
		// Both sides keep their state on a tmpfs, as by default on a real host
		// (/run/hostcompute, /run/runc; /run is a tmpfs there, where it is on
		// the root disk of some machines, this one included): our records are
		// synced, and a tmpfs makes that free, as it is in use.
		var err error
		if state, err = os.MkdirTemp("/run", "hostcompute-bench-"); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", state, "tmpfs", 0, "mode=0700"); err != nil {
			os.Remove(state)
			state = ""
			return fmt.Errorf("mounting a tmpfs for the state: %w", err)
		}
		runcRoot = filepath.Join(state, "peer-runc")
		return writeBundle(bundle, rootfs)
	}
	runRow := &Row{
		Name: "container run /bin/true",
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := setup(ctx, env, dir); err != nil {
				return Setup{}, err
			}
			return Setup{Input: "busybox-static as a directory layer; start to exit of /bin/true, container removed",
				Notes: []string{"ours: `hcs run -l LAYER -- /bin/true` (overlay over the layer with a scratch folder, monitor, runc run --detach, removal); peer: `runc run` of a bundle over the same tree, then `runc delete`; both keep their state on a tmpfs, as under /run on a real host"}}, nil
		},
		Peer: Side{Name: "runc run + delete", Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			id := fmt.Sprintf("bench-run-%d-%d", os.Getpid(), run)
			return &Run{Cmds: []*exec.Cmd{
				env.command(ctx, "runc", "--root", runcRoot, "run", "--bundle", bundle, id),
				env.command(ctx, "runc", "--root", runcRoot, "delete", "--force", id),
			}}, nil
		}},
		Ours: Side{Name: "hcs run", Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			return &Run{Cmds: []*exec.Cmd{ourEnv(env.command(ctx, env.HCS, "run", "--scratch", filepath.Join(dir, "scratch"), "-l", rootfs, "--", "/bin/true"))}}, nil
		}},
		Verdict: func(res *Result) []string { return containerGoalNote(res, "start to exit") },
		Teardown: func(env *Env) error {
			removeState(state)
			return nil
		},
	}
	execRow := &Row{
		Name: "container exec /bin/true",
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := setup(ctx, env, dir); err != nil {
				return Setup{}, err
			}
			// The peer's container, and ours, both running sleep.
			peer := filepath.Join(dir, "peerbundle")
			if err := writeBundleArgs(peer, rootfs, []string{"sleep", "100000"}); err != nil {
				return Setup{}, err
			}
			// Standard streams on /dev/null: the detached container keeps them.
			if err := exec.CommandContext(ctx, "runc", "--root", runcRoot, "run", "--detach", "--bundle", peer, execID).Run(); err != nil {
				return Setup{}, fmt.Errorf("runc run -d: %w", err)
			}
			for _, args := range [][]string{
				{"container", "create", "-l", rootfs, "--scratch", filepath.Join(dir, "scratch"), execID},
				{"container", "start", execID, "--", "sleep", "100000"},
			} {
				if out, err := ourEnv(exec.CommandContext(ctx, env.HCS, args...)).CombinedOutput(); err != nil {
					return Setup{}, fmt.Errorf("hcs %s: %w: %s", strings.Join(args, " "), err, out)
				}
			}
			// The shim's memory for the same container, untimed.
			shimRSS, shimPSS, shimErr = shimResident(ctx, env, rootfs, execs)
			return Setup{Input: fmt.Sprintf("%d execs of /bin/true, one after another, in a running busybox container", execs),
				Notes: []string{"ours: `hcs container exec ID -- /bin/true` (through the container's monitor, which runs runc exec --detach and reaps the process); peer: `runc exec ID /bin/true`"}}, nil
		},
		Peer: Side{Name: "runc exec", Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			r := &Run{}
			for i := 0; i < execs; i++ {
				r.Cmds = append(r.Cmds, env.command(ctx, "runc", "--root", runcRoot, "exec", execID, "/bin/true"))
			}
			return r, nil
		}},
		Ours: Side{Name: "hcs container exec", Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			r := &Run{Check: func() error {
				if rss, pss, err := monitorResident(filepath.Join(state, execID)); err == nil {
					monitorRSS, monitorPSS = append(monitorRSS, rss), append(monitorPSS, pss)
				}
				return nil
			}}
			for i := 0; i < execs; i++ {
				r.Cmds = append(r.Cmds, ourEnv(env.command(ctx, env.HCS, "container", "exec", execID, "--", "/bin/true")))
			}
			return r, nil
		}},
		Verdict: func(res *Result) []string {
			notes := containerGoalNote(res, "exec latency")
			mib := func(b int64) float64 { return float64(b) / (1 << 20) }
			if len(monitorRSS) > 0 {
				notes = append(notes, fmt.Sprintf("the monitor's resident memory per container, after the execs: VmRSS %.1f MiB, Pss %.1f MiB", mib(monitorRSS[len(monitorRSS)-1]), mib(monitorPSS[len(monitorPSS)-1])))
			}
			if shimErr != nil {
				notes = append(notes, "containerd-shim-runc-v2 not measured: "+shimErr.Error())
			} else {
				notes = append(notes, fmt.Sprintf("containerd-shim-runc-v2 %s under containerd %s, same rootfs and execs (ctr run --rootfs, ctr task exec): VmRSS %.1f MiB, Pss %.1f MiB", containerdVersion, containerdVersion, mib(shimRSS), mib(shimPSS)))
				if len(monitorRSS) > 0 {
					verdict := "below"
					if monitorRSS[len(monitorRSS)-1] >= shimRSS {
						verdict = "NOT below"
					}
					notes = append(notes, fmt.Sprintf("goal (monitor memory): below the shim's: %s (VmRSS ratio shim/ours %.2f)", verdict, float64(shimRSS)/float64(monitorRSS[len(monitorRSS)-1])))
				}
			}
			return notes
		},
		Teardown: func(env *Env) error {
			exec.Command("runc", "--root", runcRoot, "delete", "--force", execID).Run()
			ourEnv(exec.Command(env.HCS, "container", "rm", "-f", execID)).Run()
			removeState(state)
			return nil
		},
	}
	// The same execs through the compute API from a running program: what a
	// program that drives containers (as containerd drives its shims) waits
	// for, without starting a command per exec.
	var apiTool string
	var apiPer []time.Duration
	apiRow := &Row{
		Name: "container exec /bin/true, compute API",
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			s, err := execRow.Setup(ctx, env, dir)
			if err != nil {
				return s, err
			}
			if apiTool, err = buildBenchTool(ctx, env, "execapi"); err != nil {
				return Setup{}, err
			}
			s.Notes = []string{"ours: bench/cmd/execapi, one program that opens the container and runs the execs through compute (Exec, Wait: the container's monitor runs runc exec --detach and reaps the process), its start included; peer: `runc exec ID /bin/true` per exec"}
			return s, nil
		},
		Peer: execRow.Peer,
		Ours: Side{Name: "compute Exec+Wait", Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			var out strings.Builder
			cmd := ourEnv(env.command(ctx, apiTool, "-id", execID, "-n", strconv.Itoa(execs), "/bin/true"))
			cmd.Stdout = &out
			return &Run{Cmds: []*exec.Cmd{cmd}, Check: func() error {
				var ns int64
				if _, err := fmt.Sscanf(out.String(), "median_ns=%d", &ns); err != nil {
					return fmt.Errorf("execapi printed %q: %w", out.String(), err)
				}
				apiPer = append(apiPer, time.Duration(ns))
				return nil
			}}, nil
		}},
		Verdict: func(res *Result) []string {
			notes := containerGoalNote(res, "exec latency, API")
			if len(apiPer) > 0 {
				notes = append(notes, fmt.Sprintf("one Exec+Wait alone, median: %s", fmtMillis(medianDuration(apiPer))))
			}
			return notes
		},
		Teardown: execRow.Teardown,
	}
	return []*Row{runRow, execRow, apiRow}
}

// removeState unmounts the rows' state tmpfs and removes its mount point.
func removeState(state string) {
	if state == "" {
		return
	}
	unix.Unmount(state, unix.MNT_DETACH)
	os.RemoveAll(state)
}

func containerGoalNote(res *Result, what string) []string {
	var p, o []time.Duration
	for _, s := range res.Peer {
		p = append(p, s.Wall)
	}
	for _, s := range res.Ours {
		o = append(o, s.Wall)
	}
	mp, mo := median(p), median(o)
	if mp == 0 || mo == 0 {
		return nil
	}
	r := float64(mo) / float64(mp)
	met := "met"
	if r > containerGoal {
		met = "NOT met"
	}
	return []string{fmt.Sprintf("goal (%s): ours ≤ %.1f× the bare runc command: %s (%.2f×)", what, containerGoal, met, r)}
}

// monitorResident reads the VmRSS and Pss of the monitor of the container
// whose state directory is dir.
func monitorResident(dir string) (rss, pss int64, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "monitor.pid"))
	if err != nil {
		return 0, 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, 0, err
	}
	return processMemory(pid)
}

// busyboxTree makes a directory with /bin/busybox and its links.
func busyboxTree(dir string) error {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static not installed: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, n := range strings.Fields(string(out)) {
		if n != "busybox" {
			os.Symlink("busybox", filepath.Join(bin, n))
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	return nil
}

func writeBundle(bundle, rootfs string) error {
	return writeBundleArgs(bundle, rootfs, []string{"/bin/true"})
}

// writeBundleArgs writes runc's default spec (runc spec) for rootfs running args.
func writeBundleArgs(bundle, rootfs string, args []string) error {
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %w: %s", err, out)
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args
	b, _ = json.MarshalIndent(spec, "", "  ")
	return os.WriteFile(path, b, 0o644)
}
