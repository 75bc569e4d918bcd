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

// rssGoal is the most memory an import may use, whatever the layer size.
const rssGoal = 100 << 20

// tarQuiet keeps GNU tar from printing a warning for every MSWINDOWS.* and
// LIBARCHIVE.* PAX record it does not know, which would time its stderr, not its
// extraction.
const tarQuiet = "--warning=no-unknown-keyword"

// wclayerRows are the rows for OCI Windows layer tars: import into a layer folder
// (durable and not), export back to a tar, and the memory an import of a large layer
// needs.
func wclayerRows(env *Env) []*Row {
	// Many files: the per-file cost dominates.
	many := sampletar.Options{Seed: env.Seed, Files: 52000, Bytes: 1 << 30, LargeFiles: 8, Hives: true, UtilityVM: true}
	// Few large files: memory must not grow with the data.
	large := sampletar.Options{Seed: env.Seed, Files: 2000, Bytes: 4 << 30, LargeFiles: 16}
	if env.Quick {
		many.Files, many.Bytes = 5000, 96<<20
		large.Files, large.Bytes = 200, 512<<20
	}
	shape := func(o sampletar.Options) string {
		return fmt.Sprintf("%s, %s files", sizeIEC(o.Bytes), countSI(o.Files))
	}

	durable := importRow(sampleImport(many), true)
	durable.Name = fmt.Sprintf("windows layer import, durable (%s)", shape(many))
	fast := importRow(sampleImport(many), false)
	fast.Name = fmt.Sprintf("windows layer import, no sync (%s)", shape(many))
	// A root file system's worth: many small files, symlinks and hard links, the
	// shape of a real base layer rather than a generated one.
	rootfs := env.rootfsWindows()
	rootfsDurable := importRow(treeImport(rootfs), true)
	rootfsDurable.Name = fmt.Sprintf("windows layer import, durable (%s)", rootfs.label)
	rootfsFast := importRow(treeImport(rootfs), false)
	rootfsFast.Name = fmt.Sprintf("windows layer import, no sync (%s)", rootfs.label)

	exportDurable := exportRow(many, true)
	exportDurable.Name = fmt.Sprintf("windows layer export, durable (%s)", shape(many))
	exportFast := exportRow(many, false)
	exportFast.Name = fmt.Sprintf("windows layer export, no sync (%s)", shape(many))

	rss := importRow(sampleImport(large), true)
	rss.Name = fmt.Sprintf("peak RSS importing a %s layer (%s files)", sizeIEC(large.Bytes), countSI(large.Files))
	rss.Verdict = func(res *Result) []string {
		got := maxRSS(res.Ours)
		verdict := "met"
		if got >= rssGoal {
			verdict = "NOT met"
		}
		return []string{fmt.Sprintf("goal ours peak RSS < %s: %s (%s)", sizeIEC(rssGoal), verdict, sizeIEC(got))}
	}

	return []*Row{durable, fast, rootfsDurable, rootfsFast, exportDurable, exportFast, rss}
}

// importInput makes or finds the Windows layer tar an import row reads: its path,
// a description for the report and its size.
type importInput func(ctx context.Context, env *Env) (path, desc string, size int64, err error)

// sampleImport is a generated sample tar.
func sampleImport(o sampletar.Options) importInput {
	return func(ctx context.Context, env *Env) (string, string, int64, error) {
		in, err := env.sampleTar(ctx, o)
		if err != nil {
			return "", "", 0, err
		}
		return in.Path, in.String(), in.Size, nil
	}
}

// treeImport is the Windows layer tar of a Linux tree (cimread.go), the same one
// the CIM build rows read.
func treeImport(in *cimInput) importInput {
	return func(ctx context.Context, env *Env) (string, string, int64, error) {
		t, err := in.prepareTree(ctx, env)
		if err != nil {
			return "", "", 0, err
		}
		st, err := os.Stat(t.winTar)
		if err != nil {
			return "", "", 0, err
		}
		return t.winTar, fmt.Sprintf("%s (%s): %s", filepath.Base(t.winTar), sizeIEC(st.Size()), t), st.Size(), nil
	}
}

// importRow compares GNU tar extracting a layer tar with hcs layer import writing a
// layer folder from it. With durable, both end with the data on stable storage: tar is
// followed by sync -f (syncfs) on its directory, hcs syncs by default; without it tar
// runs alone and hcs gets --no-sync.
func importRow(input importInput, durable bool) *Row {
	var inPath string
	peer := "GNU tar -x"
	ours := "hcs layer import --no-sync"
	if durable {
		peer += " + sync -f"
		ours = "hcs layer import"
	}
	return &Row{
		ManyFiles: true,
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.needGNUTar(ctx); err != nil {
				return Setup{}, err
			}
			path, desc, size, err := input(ctx, env)
			if err != nil {
				return Setup{}, err
			}
			inPath = path
			return Setup{Input: desc, Bytes: size, Warm: []string{path}}, nil
		},
		Peer: Side{
			Name: peer,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				cmds := []*exec.Cmd{env.command(ctx, "tar", tarQuiet, "-xf", inPath, "-C", dir)}
				if durable {
					cmds = append(cmds, env.command(ctx, "sync", "-f", dir))
				}
				return &Run{Cmds: cmds}, nil
			},
		},
		Ours: Side{
			Name: ours,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				args := []string{"layer", "import", "--quiet"}
				if !durable {
					args = append(args, "--no-sync")
				}
				args = append(args, "-f", inPath, filepath.Join(dir, "layer"))
				return &Run{Cmds: []*exec.Cmd{env.command(ctx, env.HCS, args...)}}, nil
			},
		},
	}
}

// exportRow compares GNU tar archiving the tree of a layer folder with hcs layer
// export writing the layer's OCI tar. The layer is imported once by hcs, untimed; both
// write their tar to a file on the work disk. With durable, both end with the tar on
// stable storage: hcs export -f flushes its file before renaming it into place, tar is
// followed by sync -f on its output. Without it hcs writes to standard output,
// redirected to the file, and tar runs alone.
//
// GNU tar archives the data directories only (Files, Hives, UtilityVM): it has no use
// for the Windows metadata hcs keeps beside them, and its tar carries none of it.
func exportRow(o sampletar.Options, durable bool) *Row {
	var (
		in        *sampleInput
		layer     string
		dirs      []string
		peerOut   sampleInput
		oursOut   sampleInput
		peerCheck bool
		oursCheck bool
	)
	peer, ours := "GNU tar -c", "hcs layer export > file"
	if durable {
		peer, ours = "GNU tar -c + sync -f", "hcs layer export -f"
	}
	return &Row{
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.needGNUTar(ctx); err != nil {
				return Setup{}, err
			}
			var err error
			if in, err = env.sampleTar(ctx, o); err != nil {
				return Setup{}, err
			}
			name := "layer-" + strings.TrimSuffix(filepath.Base(in.Path), ".tar")
			layer, err = env.fixture(name, func(dir string) error {
				env.logf("importing %s into %s (untimed)", filepath.Base(in.Path), dir)
				cmd := env.command(ctx, env.HCS, "layer", "import", "--quiet", "-f", in.Path, dir)
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %w\n%s", cmd, err, out)
				}
				return nil
			})
			if err != nil {
				return Setup{}, err
			}
			dirs = []string{"Files"}
			if o.Hives {
				dirs = append(dirs, "Hives")
			}
			if o.UtilityVM {
				dirs = append(dirs, "UtilityVM")
			}
			// Both sides read the layer's files; after the import they are cached.
			return Setup{Input: "layer folder imported from " + in.String(), Bytes: in.Size}, nil
		},
		Peer: Side{
			Name: peer,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				out := filepath.Join(dir, "out.tar")
				args := append([]string{"-cf", out, "-C", layer}, dirs...)
				cmds := []*exec.Cmd{env.command(ctx, "tar", args...)}
				if durable {
					cmds = append(cmds, env.command(ctx, "sync", "-f", out))
				}
				return &Run{
					Cmds: cmds,
					Check: func() error {
						if peerCheck {
							return nil
						}
						peerCheck = true
						return scanTar(ctx, out, &peerOut)
					},
				}, nil
			},
		},
		Ours: Side{
			Name: ours,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				out := filepath.Join(dir, "out.tar")
				r := &Run{}
				if durable {
					r.Cmds = []*exec.Cmd{env.command(ctx, env.HCS, "layer", "export", "--quiet", "-f", out, layer)}
				} else {
					f, err := os.Create(out)
					if err != nil {
						return nil, err
					}
					cmd := env.command(ctx, env.HCS, "layer", "export", "--quiet", layer)
					cmd.Stdout = f
					r.Cmds, r.Cleanup = []*exec.Cmd{cmd}, f.Close
				}
				r.Check = func() error {
					if oursCheck {
						return nil
					}
					oursCheck = true
					if err := scanTar(ctx, out, &oursOut); err != nil {
						return err
					}
					if oursOut.Entries != in.Entries || oursOut.Data != in.Data {
						return fmt.Errorf("exported tar has %d entries and %d bytes of data, the imported one %d and %d",
							oursOut.Entries, oursOut.Data, in.Entries, in.Data)
					}
					return nil
				}
				return r, nil
			},
		},
		Verdict: func(res *Result) []string {
			return []string{fmt.Sprintf("output: ours %s, %d entries; peer %s, %d entries (no Windows metadata, streams or hcsmeta)",
				sizeIEC(oursOut.Size), oursOut.Entries, sizeIEC(peerOut.Size), peerOut.Entries)}
		},
	}
}
