package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
)

func init() { registry = append(registry, commitRows) }

// commitRows time committing a writable layer: the changes a container made
// through a scratch layer's union, written as a layer tar.
func commitRows(env *Env) []*Row {
	changes := sampletar.Options{Seed: env.Seed + 100, Files: 4000, Bytes: 1 << 30, LargeFiles: 8}
	if env.Quick {
		changes.Files, changes.Bytes = 500, 64<<20
	}
	return []*Row{commitRow(changes)}
}

// commitRow: a scratch layer over a base, prepared, receives through its union
// the files of a sample layer (extracted with GNU tar), a rewrite of some base
// files and the deletion of others, all untimed in setup; then the layer is
// unprepared and stays active. Peer: GNU tar -c of the union's upper directory
// (the volume's Files/), then sync -f. Ours: hcs layer export -f of the scratch
// layer, which reads the same upper against the base's Windows metadata and
// flushes its tar before renaming it into place.
func commitRow(changes sampletar.Options) *Row {
	var (
		scratch, upper string
		stateEnv       []string
		peerOut        sampleInput
		oursOut        sampleInput
		checked        bool
	)
	hcs := func(ctx context.Context, env *Env, args ...string) *exec.Cmd {
		cmd := env.command(ctx, env.HCS, args...)
		cmd.Env = append(os.Environ(), stateEnv...)
		return cmd
	}
	run := func(cmd *exec.Cmd) error {
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, out)
		}
		return nil
	}
	return &Row{
		Name:      fmt.Sprintf("commit a scratch layer (%s diff, %s files): hcs layer export of a scratch vs GNU tar -c of its upper directory", sizeIEC(changes.Bytes), countSI(changes.Files)),
		ManyFiles: false,
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if os.Geteuid() != 0 {
				return Setup{}, errors.New("needs root for loop devices, FUSE and mounts")
			}
			if err := env.needGNUTar(ctx); err != nil {
				return Setup{}, err
			}
			stateEnv = []string{"HOSTCOMPUTE_STATE_DIR=" + filepath.Join(dir, "state")}
			in, err := env.sampleTar(ctx, changes)
			if err != nil {
				return Setup{}, err
			}
			base := filepath.Join(dir, "base")
			var buf bytes.Buffer
			if err := sampletar.Write(&buf, sampletar.Options{Seed: changes.Seed + 1, Files: 400, Bytes: 8 << 20}); err != nil {
				return Setup{}, err
			}
			if _, err := ociwclayer.ImportLayerFromTar(ctx, &buf, base, nil); err != nil {
				return Setup{}, err
			}
			scratch = filepath.Join(dir, "scratch")
			size := fmt.Sprintf("%dMiB", (2*changes.Bytes+(512<<20))>>20)
			for _, args := range [][]string{
				{"layer", "scratch", "--size", size, "--parent", base, scratch},
				{"layer", "activate", scratch},
				{"layer", "prepare", scratch},
			} {
				if err := run(hcs(ctx, env, args...)); err != nil {
					return Setup{}, err
				}
			}
			out, err := hcs(ctx, env, "layer", "path", scratch).Output()
			if err != nil {
				return Setup{}, fmt.Errorf("hcs layer path: %w", err)
			}
			union := strings.TrimSpace(string(out))
			env.logf("writing %s through the union of %s (untimed)", sizeIEC(changes.Bytes), scratch)
			// New files, then every tenth base file rewritten and every tenth deleted.
			if err := os.Mkdir(filepath.Join(union, "added"), 0o755); err != nil {
				return Setup{}, err
			}
			if err := run(exec.CommandContext(ctx, "tar", tarQuiet, "-xf", in.Path, "-C", filepath.Join(union, "added"))); err != nil {
				return Setup{}, err
			}
			var n int
			err = filepath.WalkDir(filepath.Join(union, "Windows"), func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				switch n++; n % 10 {
				case 0:
					return os.WriteFile(p, []byte("rewritten through the union\n"), 0o644)
				case 5:
					return os.Remove(p)
				}
				return nil
			})
			if err != nil {
				return Setup{}, err
			}
			if err := run(hcs(ctx, env, "layer", "unprepare", scratch)); err != nil {
				return Setup{}, err
			}
			out, err = hcs(ctx, env, "layer", "path", scratch).Output()
			if err != nil {
				return Setup{}, fmt.Errorf("hcs layer path: %w", err)
			}
			upper = filepath.Join(strings.TrimSpace(string(out)), "Files")
			return Setup{
				Input: fmt.Sprintf("a scratch layer (dynamic VHDX, ext4) over a base of 400 files, whose union received %s (%s of file data, extracted by GNU tar), a rewrite of every tenth base file and the deletion of others; unprepared, active", in.String(), sizeIEC(in.Data)),
				Bytes: in.Data,
				Notes: []string{"both sides read the same upper directory (the scratch volume's Files/, a loop device over the VHDX's FUSE raw view), warmed before each pair; the peer's tar has no Windows metadata and keeps the whiteouts as device files, ours turns them into whiteout entries and gives every entry its Windows metadata (the base's for copied-up files)"},
			}, nil
		},
		Teardown: func(env *Env) error {
			if scratch == "" {
				return nil
			}
			return run(hcs(context.Background(), env, "layer", "deactivate", scratch))
		},
		Peer: Side{
			Name: "GNU tar -c of the upper + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				// Warm the upper, untimed, so that both sides read it from the page cache.
				if err := exec.CommandContext(ctx, "tar", "-cf", "/dev/null", "-C", upper, ".").Run(); err != nil {
					return nil, fmt.Errorf("warming %s: %w", upper, err)
				}
				out := filepath.Join(dir, "out.tar")
				return &Run{
					Cmds: []*exec.Cmd{env.command(ctx, "tar", "-cf", out, "-C", upper, "."), env.command(ctx, "sync", "-f", out)},
					Check: func() error {
						if run == 0 {
							return scanTar(ctx, out, &peerOut)
						}
						return nil
					},
				}, nil
			},
		},
		Ours: Side{
			Name: "hcs layer export -f (scratch layer)",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				out := filepath.Join(dir, "out.tar")
				return &Run{
					Cmds: []*exec.Cmd{hcs(ctx, env, "layer", "export", "--quiet", "-f", out, scratch)},
					Check: func() error {
						if checked {
							return nil
						}
						checked = true
						if err := scanTar(ctx, out, &oursOut); err != nil {
							return err
						}
						if oursOut.Data < changes.Bytes*9/10 {
							return fmt.Errorf("the exported diff holds %s of data, want about %s", sizeIEC(oursOut.Data), sizeIEC(changes.Bytes))
						}
						return nil
					},
				}, nil
			},
		},
		Verdict: func(res *Result) []string {
			notes := []string{fmt.Sprintf("output: ours %s, %d entries, %s of data; peer %s, %d entries",
				sizeIEC(oursOut.Size), oursOut.Entries, sizeIEC(oursOut.Data), sizeIEC(peerOut.Size), peerOut.Entries)}
			if pm, om := median(walls(res.Peer)), median(walls(res.Ours)); om > 0 {
				r := float64(pm) / float64(om)
				verdict := "met"
				if r < 1.0 {
					verdict = "NOT met"
				}
				notes = append(notes, fmt.Sprintf("goal ratio ≥ 1.0: %s (%.2f)", verdict, r))
			}
			return notes
		},
	}
}
