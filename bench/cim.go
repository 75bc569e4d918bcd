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

// cimRows compare building a CIM layer with building the two read-only images Linux
// has for the same job, from the same content: mkfs.erofs (uncompressed) and
// mksquashfs with every compression off. The peers read the tree a tar extraction
// made (a fixture, untimed); hcs reads the layer tar itself, as a node would.
func cimRows(env *Env) []*Row {
	o := sampletar.Options{Seed: env.Seed, Files: 52000, Bytes: 1 << 30, LargeFiles: 8, Hives: true, UtilityVM: true}
	if env.Quick {
		o.Files, o.Bytes = 5000, 96<<20
	}
	shape := fmt.Sprintf("%s, %s files", sizeIEC(o.Bytes), countSI(o.Files))
	erofs := cimBuildRow(o, "mkfs.erofs", "erofs-utils", func(tree, out string) []string {
		return []string{"mkfs.erofs", "--quiet", out, tree}
	})
	erofs.Name = fmt.Sprintf("cim build vs mkfs.erofs (%s)", shape)
	squash := cimBuildRow(o, "mksquashfs", "squashfs-tools", func(tree, out string) []string {
		return []string{"mksquashfs", tree, out, "-noI", "-noD", "-noF", "-noX", "-quiet", "-no-progress", "-processors", "2"}
	})
	squash.Name = fmt.Sprintf("cim build vs mksquashfs -noI -noD -noF -noX (%s)", shape)
	return []*Row{erofs, squash}
}

// cimBuildRow times peerArgs(tree, image) then sync -f image against hcs cim create
// -f layer.tar: both end with the image on stable storage (hcs syncs its region and
// .cim files before renaming them into place). The notes give both image sizes and
// the goal of an image at most 1.1× the peer's.
func cimBuildRow(o sampletar.Options, peerBin, peerPkg string, peerArgs func(tree, out string) []string) *Row {
	var (
		in                   *sampleInput
		tree                 string
		peerSize, oursSize   int64
		peerSized, oursSized bool
	)
	return &Row{
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.needGNUTar(ctx); err != nil {
				return Setup{}, err
			}
			if err := env.need(ctx, peerBin, peerPkg); err != nil {
				return Setup{}, err
			}
			var err error
			if in, err = env.sampleTar(ctx, o); err != nil {
				return Setup{}, err
			}
			name := "tree-" + strings.TrimSuffix(filepath.Base(in.Path), ".tar")
			tree, err = env.fixture(name, func(dir string) error {
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
			return Setup{Input: in.String() + "; the peer reads the extracted tree", Bytes: in.Size, Warm: []string{in.Path}}, nil
		},
		Peer: Side{
			Name: peerBin + " + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				out := filepath.Join(dir, "image")
				args := peerArgs(tree, out)
				return &Run{
					Cmds: []*exec.Cmd{env.command(ctx, args[0], args[1:]...), env.command(ctx, "sync", "-f", out)},
					Check: func() error {
						if peerSized {
							return nil
						}
						st, err := os.Stat(out)
						if err != nil {
							return err
						}
						peerSize, peerSized = st.Size(), true
						return nil
					},
				}, nil
			},
		},
		Ours: Side{
			Name: "hcs cim create -f layer.tar",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				layer := filepath.Join(dir, "layer")
				return &Run{
					Cmds: []*exec.Cmd{env.command(ctx, env.HCS, "cim", "create", "--quiet", "-f", in.Path, layer)},
					Check: func() error {
						if oursSized {
							return nil
						}
						var n int64
						ents, err := os.ReadDir(filepath.Join(dir, "cim-layers"))
						if err != nil {
							return err
						}
						for _, e := range ents {
							fi, err := e.Info()
							if err != nil {
								return err
							}
							n += fi.Size()
						}
						oursSize, oursSized = n, true
						// The image must verify.
						cmd := env.command(ctx, env.HCS, "cim", "verify", "--quiet", layer)
						if out, err := cmd.CombinedOutput(); err != nil {
							return fmt.Errorf("%s: %w\n%s", cmd, err, out)
						}
						return nil
					},
				}, nil
			},
		},
		Verdict: func(res *Result) []string {
			if !peerSized || !oursSized {
				return nil
			}
			ratio := float64(oursSize) / float64(peerSize)
			verdict := "met"
			if ratio > 1.1 {
				verdict = "NOT met"
			}
			return []string{
				fmt.Sprintf("image sizes: %s %s, hcs %s (all .cim, region and object ID files): %.3f×", peerBin, sizeIEC(peerSize), sizeIEC(oursSize), ratio),
				fmt.Sprintf("goal image ≤ 1.1× the peer's: %s", verdict),
			}
		},
	}
}
