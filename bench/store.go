package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	mnt "github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/store"
)

// storeRows are the layer store rows: Prepare and View over 1, 16, 128 and 500
// parents, each with the mount of what it returns, beside a bare mount(2) of the
// same layer directories; and the open of a store holding 10,000 layers.
func storeRows(env *Env) []*Row {
	var rows []*Row
	for _, op := range []string{"prepare", "view"} {
		for _, n := range []int{1, 16, 128, mnt.MaxLowerLayers} {
			rows = append(rows, storeMountRow(op, n))
		}
	}
	return append(rows, storeOpenRow())
}

// steadyCalls is how many more calls each storeview run makes after the
// timed first one, in the same process: the steady state of a long-running
// caller, reported beside the goal's first-call figure.
const steadyCalls = 10

// freshProcesses is how many new processes each storeview run starts, one after
// another, to time their first calls: a run reports their median, as the first
// call of one process varies more than the difference the goal is about.
const freshProcesses = 7

// storeMountGoal is the goal: at 128 parents, the store's prepare or view
// plus its mount within 1.5 times a bare mount(2) of the same union.
const storeMountGoal = 1.5

func storeMountRow(op string, n int) *Row {
	var (
		tool, root, lowers, top string
		inProc                  = map[string][]time.Duration{}
		steady                  = map[string][]time.Duration{}
		peerPaths               string
	)
	side := func(mode string) Side {
		name := "store." + strings.ToUpper(op[:1]) + op[1:] + " + mount of its mounts (host executor)"
		if mode == "peer" {
			name = "mount(2) of the same layer directories"
		}
		return Side{
			Name: name,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")
				for _, d := range []string{upper, work, target} {
					if err := os.Mkdir(d, 0o755); err != nil {
						return nil, err
					}
				}
				key := fmt.Sprintf("bench-%s-%d", mode, run)
				cmd := env.command(ctx, tool, "-mode", mode, "-op", op, "-store", root, "-parent", top, "-key", key,
					"-lowers", lowers, "-upper", upper, "-work", work, "-target", target, "-steady", strconv.Itoa(steadyCalls), "-fresh", strconv.Itoa(freshProcesses))
				var out bytes.Buffer
				cmd.Stdout = &out
				return &Run{
					Cmds: []*exec.Cmd{cmd},
					Check: func() error {
						var ns, steadyNs int64
						var paths string
						if _, err := fmt.Sscanf(out.String(), "op_ns=%d paths=%s steady_ns=%d", &ns, &paths, &steadyNs); err != nil {
							return fmt.Errorf("storeview printed %q: %w", out.String(), err)
						}
						inProc[mode] = append(inProc[mode], time.Duration(ns))
						steady[mode] = append(steady[mode], time.Duration(steadyNs))
						if mode == "peer" {
							peerPaths = paths
						}
						b, err := os.ReadFile(filepath.Join(target, "shared"))
						if err != nil || string(b) != strconv.Itoa(n-1) {
							return fmt.Errorf("%s: shared = %q, %v; want the top layer's %d", mode, b, err, n-1)
						}
						return nil
					},
					// The layer stays in the store until the row ends, as the
					// peer's directories do: removing it here would free inodes
					// before the next run, which on ext4 without a journal makes
					// the next run's directories slow to create (see runner.go).
					Cleanup: func() error { return mnt.Unmount(target) },
				}, nil
			},
		}
	}
	return &Row{
		Name: fmt.Sprintf("store %s over %d parent%s", op, n, plural(n)),
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if os.Geteuid() != 0 {
				return Setup{}, fmt.Errorf("the store rows need root (overlay mounts)")
			}
			var err error
			if tool, err = buildBenchTool(ctx, env, "storeview"); err != nil {
				return Setup{}, err
			}
			root = filepath.Join(dir, "store")
			if top, err = makeStoreChain(ctx, root, n); err != nil {
				return Setup{}, err
			}
			// The peer mounts the directories the store's own plan names.
			s, err := store.Open(ctx, root)
			if err != nil {
				return Setup{}, err
			}
			defer s.Close()
			ms, err := s.View(ctx, "bench-lowers", top)
			if err != nil {
				return Setup{}, err
			}
			var ls []string
			if ms[0].Type == "bind" {
				ls = []string{ms[0].Source}
			} else {
				o, err := store.ParseOverlay(ms[0])
				if err != nil {
					return Setup{}, err
				}
				ls = o.Lower
			}
			if err := s.Remove(ctx, "bench-lowers"); err != nil {
				return Setup{}, err
			}
			lowers = filepath.Join(dir, "lowers.txt")
			if err := os.WriteFile(lowers, []byte(strings.Join(ls, "\n")), 0o644); err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: fmt.Sprintf("a store with a chain of %d committed directory layers of 2 files each; a new %s per run over the top one, mounted at a fresh mount point", n, op),
				Notes: []string{fmt.Sprintf("wall times include starting bench/cmd/storeview and, for ours, opening the store, in each of %d processes a run starts one after another; the notes give the median over the runs of the timed first call alone (each run's figure the median of its processes; ours: the store call plus the mount; peer: mount(2), for prepare after making the union's upper and work directories, as ours makes its layer's)", freshProcesses)},
			}, nil
		},
		Peer: side("peer"),
		Ours: side("ours"),
		Verdict: func(res *Result) []string {
			p, o := medianDuration(inProc["peer"]), medianDuration(inProc["ours"])
			notes := []string{fmt.Sprintf("timed call alone, median: peer %s, ours %s", fmtMillis(p), fmtMillis(o))}
			if p > 0 && o > 0 {
				notes = append(notes, fmt.Sprintf("ours / peer = %.2f×", float64(o)/float64(p)))
			}
			if sp, so := medianDuration(steady["peer"]), medianDuration(steady["ours"]); sp > 0 && so > 0 {
				notes = append(notes, fmt.Sprintf("in one process, the %d calls after the first (each unmounted again, untimed), median: peer %s, ours %s (%.2f×)", steadyCalls, fmtMillis(sp), fmtMillis(so), float64(so)/float64(sp)))
			}
			if peerPaths == "relative" {
				notes = append(notes, "peer: absolute lower paths overflow mount(2)'s one-page option string, so it chdirs to layers/ and passes <id>/fs names")
			}
			if n == 128 && p > 0 && o > 0 {
				met := "met"
				if float64(o) > storeMountGoal*float64(p) {
					met = "NOT met"
				}
				notes = append(notes, fmt.Sprintf("goal: ≤ %.1f× mount(2) at 128 parents: %s (%.2f×)", storeMountGoal, met, float64(o)/float64(p)))
			}
			return notes
		},
	}
}

// makeStoreChain makes a store at root with a chain of n committed layers L0
// (bottom) .. L<n-1> (top); layer i holds "shared" (i) and "f<i>". It returns the
// top layer's key.
func makeStoreChain(ctx context.Context, root string, n int) (string, error) {
	s, err := store.Open(ctx, root)
	if err != nil {
		return "", err
	}
	defer s.Close()
	parent := ""
	for i := range n {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, name := range []string{"shared", "f" + strconv.Itoa(i)} {
			body := strconv.Itoa(i)
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)})
			tw.Write([]byte(body))
		}
		tw.Close()
		key := "L" + strconv.Itoa(i)
		if _, err := s.Import(ctx, key, parent, &b); err != nil {
			return "", err
		}
		parent = key
	}
	return parent, nil
}

// storeOpenGoal is the goal for opening a store of 10,000 layers.
const storeOpenGoal = 100 * time.Millisecond

func storeOpenRow() *Row {
	var (
		tool, root string
		inProc     = map[string][]time.Duration{}
		layers     int
	)
	side := func(mode string) Side {
		name := "store.Open (flock, bbolt, reconcile against mountinfo and layers/)"
		if mode == "peer" {
			name = "bbolt open of meta.db + decoding every record"
		}
		return Side{
			Name: name,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				cmd := env.command(ctx, tool, "-mode", mode, "-op", "open", "-store", root)
				var out bytes.Buffer
				cmd.Stdout = &out
				return &Run{
					Cmds: []*exec.Cmd{cmd},
					Check: func() error {
						var ns int64
						var paths string
						if _, err := fmt.Sscanf(out.String(), "op_ns=%d paths=%s", &ns, &paths); err != nil {
							return fmt.Errorf("storeview printed %q: %w", out.String(), err)
						}
						inProc[mode] = append(inProc[mode], time.Duration(ns))
						return nil
					},
				}, nil
			},
		}
	}
	return &Row{
		Name: "store open, 10000 layers",
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			var err error
			if tool, err = buildBenchTool(ctx, env, "storeview"); err != nil {
				return Setup{}, err
			}
			layers = 10000
			if env.Quick {
				layers = 1000
			}
			root = filepath.Join(dir, "store")
			s, err := store.Open(ctx, root)
			if err != nil {
				return Setup{}, err
			}
			defer s.Close()
			// Chains of 100 committed layers, as images' layers are chained.
			for i := range layers {
				parent := ""
				if i%100 != 0 {
					parent = "c" + strconv.Itoa(i-1)
				}
				k := "c" + strconv.Itoa(i)
				if _, err := s.Prepare(ctx, k+"-a", parent); err != nil {
					return Setup{}, err
				}
				if err := s.Commit(ctx, k, k+"-a", store.WithLabels(map[string]string{"containerd.io/gc.root": "bench"})); err != nil {
					return Setup{}, err
				}
				if i%1000 == 999 {
					env.logf("store open: %d layers made", i+1)
				}
			}
			return Setup{Input: fmt.Sprintf("a store of %d committed layers (chains of 100), nothing to clean", layers)}, nil
		},
		Peer: side("peer"),
		Ours: side("ours"),
		Verdict: func(res *Result) []string {
			p, o := medianDuration(inProc["peer"]), medianDuration(inProc["ours"])
			notes := []string{fmt.Sprintf("open alone, median: peer %s, ours %s", fmtMillis(p), fmtMillis(o))}
			if layers == 10000 && o > 0 {
				met := "met"
				if o >= storeOpenGoal {
					met = "NOT met"
				}
				notes = append(notes, fmt.Sprintf("goal: open of 10,000 layers < %s: %s (%s)", fmtMillis(storeOpenGoal), met, fmtMillis(o)))
			}
			return notes
		},
	}
}
