package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hostcompute/hostcompute/internal/sampletar"
)

// imageConvertRows compare converting a two-layer Windows image to CIMs (hcs image
// convert --to cim: each layer's CIM forking its parent's, read from the store,
// with the report's sha256 of every file) against mkfs.erofs of the same layers'
// trees, one uncompressed EROFS image per layer. The image is built in the store
// with hcs image append and the trees extracted by GNU tar once, untimed.
func imageConvertRows(env *Env) []*Row {
	base := sampletar.Options{Seed: env.Seed, Files: 13000, Bytes: 256 << 20, LargeFiles: 4, Hives: true, UtilityVM: true}
	child := sampletar.Options{Seed: env.Seed + 1, Files: 2000, Bytes: 32 << 20}
	if env.Quick {
		base.Files, base.Bytes = 3000, 48<<20
		child.Files, child.Bytes = 400, 8<<20
	}
	var (
		ins   []*sampleInput
		trees []string
		store string
		cims  int
	)
	const ref = "bench/windows:1"
	return []*Row{{
		Name:      fmt.Sprintf("image convert --to cim vs mkfs.erofs of each layer (%s + %s)", sizeIEC(base.Bytes), sizeIEC(child.Bytes)),
		ManyFiles: true,
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.needGNUTar(ctx); err != nil {
				return Setup{}, err
			}
			if err := env.need(ctx, "mkfs.erofs", "erofs-utils"); err != nil {
				return Setup{}, err
			}
			ins, trees = nil, nil
			var total int64
			for _, o := range []sampletar.Options{base, child} {
				in, err := env.sampleTar(ctx, o)
				if err != nil {
					return Setup{}, err
				}
				name := "tree-" + strings.TrimSuffix(filepath.Base(in.Path), ".tar")
				tree, err := env.fixture(name, func(dir string) error {
					env.logf("extracting %s into %s (untimed)", filepath.Base(in.Path), dir)
					if err := os.MkdirAll(dir, 0o755); err != nil {
						return err
					}
					cmd := env.command(ctx, "tar", tarQuiet, "-xf", in.Path, "-C", dir)
					if out, err := cmd.CombinedOutput(); err != nil {
						return fmt.Errorf("%s: %w\n%s", cmd, err, out)
					}
					return nil
				})
				if err != nil {
					return Setup{}, err
				}
				ins, trees, total = append(ins, in), append(trees, tree), total+in.Size
			}
			// The image: the base layer on scratch, the child on top (untimed).
			store = filepath.Join(dir, "store")
			env.logf("building %s in %s (untimed)", ref, store)
			for i, args := range [][]string{
				{"--base", "scratch", "--platform", "windows/amd64:10.0.20348.2113", "--layer", ins[0].Path, "-t", "bench/windows-base:1"},
				{"--base", "bench/windows-base:1", "--layer", ins[1].Path, "-t", ref},
			} {
				cmd := env.command(ctx, env.HCS, append([]string{"image", "--root", store, "append", "--quiet"}, args...)...)
				if out, err := cmd.CombinedOutput(); err != nil {
					return Setup{}, fmt.Errorf("building layer %d of the bench image: %s: %w\n%s", i, cmd, err, out)
				}
			}
			return Setup{Input: fmt.Sprintf("a Windows image of two layers: %s; %s (the peer reads their extracted trees)", ins[0].String(), ins[1].String()),
				Bytes: total, Notes: []string{"MB/s is of the two uncompressed layer tars"}}, nil
		},
		Peer: Side{
			Name: "mkfs.erofs of each layer's tree + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				var cmds []*exec.Cmd
				for i, tree := range trees {
					cmds = append(cmds, env.command(ctx, "mkfs.erofs", "--quiet", filepath.Join(dir, fmt.Sprintf("layer%d.erofs", i)), tree))
				}
				return &Run{Cmds: append(cmds, env.command(ctx, "sync", "-f", dir))}, nil
			},
		},
		Ours: Side{
			Name: "hcs image convert --to cim",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				out := filepath.Join(dir, "cims")
				return &Run{
					Cmds: []*exec.Cmd{env.command(ctx, env.HCS, "image", "--root", store, "convert", "--quiet", ref, "--to", "cim", "--dir", out)},
					Check: func() error {
						ms, err := filepath.Glob(filepath.Join(out, "cim-layers", "*.cim"))
						if err != nil {
							return err
						}
						if len(ms) != 2 {
							return fmt.Errorf("convert made %d CIMs, want 2", len(ms))
						}
						cims = len(ms)
						return nil
					},
				}, nil
			},
		},
		Verdict: func(res *Result) []string {
			if cims == 0 {
				return nil
			}
			return []string{"both layers converted (the child's CIM forks the base's); no goal set in the issue"}
		},
	}}
}
