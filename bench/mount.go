package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	mnt "github.com/hostcompute/hostcompute/internal/mount"
)

// mountRows are the union mount latency rows: overlay unions of 1, 16, 128 and 500
// directory layers, mounted by internal/mount beside a bare mount(2).
func mountRows(env *Env) []*Row {
	var rows []*Row
	for _, n := range []int{1, 16, 128, mnt.MaxLowerLayers} {
		rows = append(rows, unionMountRow(n))
	}
	return rows
}

// unionMountGoal is the goal for a 128-layer union.
const unionMountGoal = 20 * time.Millisecond

// unionMountRow compares one writable overlay mount of n directory layers: ours
// through internal/mount's executor, the peer with mount(2) and an option
// string. Both run in bench/cmd/unionmount, which times the mount call itself and
// prints it; the table's wall times add the helper's start-up, the same on both
// sides. Each run mounts on a fresh mount point with fresh upper and work
// directories; the unmount is untimed.
func unionMountRow(n int) *Row {
	var (
		tool, lowers string
		inProc       = map[string][]time.Duration{}
		peerPaths    string
	)
	side := func(mode string) Side {
		name := "internal/mount.MountOverlay: one mount(2), lowers relative to their directory past a page"
		if mode == "peer" {
			name = "mount(2) with lowerdir=a:b:...,upperdir=,workdir="
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
				cmd := env.command(ctx, tool, "-mode", mode, "-lowers", lowers, "-n", strconv.Itoa(n),
					"-upper", upper, "-work", work, "-target", target)
				var out bytes.Buffer
				cmd.Stdout = &out
				return &Run{
					Cmds: []*exec.Cmd{cmd},
					Check: func() error {
						var ns int64
						var paths string
						if _, err := fmt.Sscanf(out.String(), "mount_ns=%d paths=%s", &ns, &paths); err != nil {
							return fmt.Errorf("unionmount printed %q: %w", out.String(), err)
						}
						inProc[mode] = append(inProc[mode], time.Duration(ns))
						if mode == "peer" {
							peerPaths = paths
						}
						// The union shows the top layer's file and hides the
						// bottom layer's whited-out one.
						b, err := os.ReadFile(filepath.Join(target, "shared"))
						if err != nil || string(b) != "0" {
							return fmt.Errorf("%s union: shared = %q, %v; want the top layer's 0", mode, b, err)
						}
						if n > 1 {
							if _, err := os.Lstat(filepath.Join(target, "gone")); err == nil {
								return fmt.Errorf("%s union: the whiteout does not hide /gone", mode)
							}
						}
						return nil
					},
					Cleanup: func() error { return mnt.Unmount(target) },
				}, nil
			},
		}
	}
	return &Row{
		Name: fmt.Sprintf("union mount %d layer%s", n, plural(n)),
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if os.Geteuid() != 0 {
				return Setup{}, fmt.Errorf("the union mount rows need root (mount(2), fsopen)")
			}
			var err error
			if tool, err = buildBenchTool(ctx, env, "unionmount"); err != nil {
				return Setup{}, err
			}
			lowers = filepath.Join(dir, "lowers")
			if err := makeMountLayers(lowers, n); err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: fmt.Sprintf("%d directory layers of 9 files each (%s/0 ... /%d), a whiteout in the top one; fresh upper, work and mount point per run", n, "lowers", n-1),
				Notes: []string{"wall times include starting bench/cmd/unionmount (both sides alike); the notes give the median of the mount call alone"},
			}, nil
		},
		Peer: side("peer"),
		Ours: side("ours"),
		Verdict: func(res *Result) []string {
			p, o := medianDuration(inProc["peer"]), medianDuration(inProc["ours"])
			notes := []string{fmt.Sprintf("mount call alone, median: peer %s, ours %s", fmtMillis(p), fmtMillis(o))}
			if peerPaths == "relative" {
				notes = append(notes, "peer: absolute lower paths overflow mount(2)'s one-page option string at this depth, so it chdirs to the layers' parent and passes relative names (0:1:...)")
			}
			if n == 128 && o > 0 {
				met := "met"
				if o >= unionMountGoal {
					met = "NOT met"
				}
				notes = append(notes, fmt.Sprintf("goal: 128-layer union < %s: %s (%s)", fmtMillis(unionMountGoal), met, fmtMillis(o)))
			}
			return notes
		},
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtMillis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

// makeMountLayers makes n layer directories dir/0 (top) to dir/n-1: each holds
// "shared" with its index and eight files of its own; the bottom one has "gone",
// which an overlay whiteout in the top one hides.
func makeMountLayers(dir string, n int) error {
	for i := range n {
		d := filepath.Join(dir, strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "shared"), []byte(strconv.Itoa(i)), 0o644); err != nil {
			return err
		}
		for j := range 8 {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d-%d", i, j)), nil, 0o644); err != nil {
				return err
			}
		}
	}
	if n > 1 {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(n-1), "gone"), nil, 0o644); err != nil {
			return err
		}
		if err := mknodWhiteout(filepath.Join(dir, "0", "gone")); err != nil {
			return err
		}
	}
	return nil
}

// buildBenchTool builds ./bench/cmd/<name> into the work directory once per
// invocation and returns its path.
func buildBenchTool(ctx context.Context, env *Env, name string) (string, error) {
	bin := filepath.Join(env.Work, "bin", name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	goTool := "go"
	if f := flag.Lookup("go"); f != nil {
		goTool = f.Value.String()
	}
	env.logf("building ./bench/cmd/%s", name)
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./bench/cmd/"+name)
	cmd.Dir = env.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ./bench/cmd/%s: %w\n%s", name, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}
