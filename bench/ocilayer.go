package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ocilayerRows are the rows for applying an OCI Linux layer tar onto a directory:
// hcs ocilayer apply against GNU tar and against containerd's archive.Apply, each
// durable (followed by sync -f) and not, on the Debian root filesystem tar.
func ocilayerRows(env *Env) []*Row {
	input := "Debian rootfs"
	if env.Quick {
		input = "busybox rootfs"
	}
	tarRow := func(durable bool) *Row {
		return applyRow(input, durable, "GNU tar", "GNU tar -xp --numeric-owner --xattrs", func(ctx context.Context, env *Env, in, dir string) (*exec.Cmd, error) {
			return env.command(ctx, "tar", "-xpf", in, "--numeric-owner", "--xattrs", "-C", dir), nil
		}, func(ctx context.Context, env *Env) error { return env.needGNUTar(ctx) })
	}
	var containerd string
	ctrRow := func(durable bool) *Row {
		return applyRow(input, durable, "containerd", "containerd archive.Apply (v2)", func(ctx context.Context, env *Env, in, dir string) (*exec.Cmd, error) {
			return env.command(ctx, containerd, in, dir), nil
		}, func(ctx context.Context, env *Env) (err error) {
			containerd, err = env.goPeer(ctx, "containerd-apply")
			return err
		})
	}
	return []*Row{tarRow(true), tarRow(false), ctrRow(true), ctrRow(false)}
}

// applyRow compares a peer extracting the layer tar into a new directory with hcs
// ocilayer apply doing the same; with durable, both are followed by sync -f on the
// directory. Once, untimed, the two trees of the first pair are compared entry by
// entry.
func applyRow(input string, durable bool, peerShort, peerName string,
	peerCmd func(ctx context.Context, env *Env, in, dir string) (*exec.Cmd, error),
	peerSetup func(ctx context.Context, env *Env) error) *Row {
	var (
		in       *rootfsInput
		peerRoot string
		compared string
	)
	suffix := ", no sync"
	if durable {
		peerName += " + sync -f"
		suffix = ", durable"
	}
	ours := "hcs ocilayer apply"
	if durable {
		ours += " + sync -f"
	}
	withSync := func(ctx context.Context, env *Env, cmd *exec.Cmd, root string) []*exec.Cmd {
		cmds := []*exec.Cmd{cmd}
		if durable {
			cmds = append(cmds, env.command(ctx, "sync", "-f", root))
		}
		return cmds
	}
	return &Row{
		Name:      fmt.Sprintf("OCI layer apply vs %s%s (%s)", peerShort, suffix, input),
		ManyFiles: true,
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := peerSetup(ctx, env); err != nil {
				return Setup{}, err
			}
			var err error
			if in, err = env.linuxRootfs(ctx); err != nil {
				return Setup{}, err
			}
			return Setup{Input: in.String(), Bytes: in.Size, Warm: []string{in.Path},
				Notes: []string{"every run extracts into a new, empty directory; the tar is uncompressed and cached in memory"}}, nil
		},
		Peer: Side{
			Name: peerName,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				root := filepath.Join(dir, "rootfs")
				if err := os.Mkdir(root, 0o755); err != nil {
					return nil, err
				}
				cmd, err := peerCmd(ctx, env, in.Path, root)
				if err != nil {
					return nil, err
				}
				if run == 0 {
					peerRoot = root
				}
				return &Run{Cmds: withSync(ctx, env, cmd, root)}, nil
			},
		},
		Ours: Side{
			Name: ours,
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				root := filepath.Join(dir, "rootfs")
				if err := os.Mkdir(root, 0o755); err != nil {
					return nil, err
				}
				cmd := env.command(ctx, env.HCS, "ocilayer", "apply", "--quiet", "-f", in.Path, root)
				r := &Run{Cmds: withSync(ctx, env, cmd, root)}
				if run == 0 {
					r.Check = func() error {
						compared = compareTrees(peerRoot, root)
						return nil
					}
				}
				return r, nil
			},
		},
		Verdict: func(res *Result) []string {
			notes := []string{"trees of the first pair: " + compared}
			if pm, om := median(walls(res.Peer)), median(walls(res.Ours)); om > 0 {
				ratio := float64(pm) / float64(om)
				notes = append(notes, fmt.Sprintf("goal apply ≥ 1.0× the peer: %s (%.2f×)", metIf(ratio >= 1.0), ratio))
			}
			return notes
		},
	}
}
