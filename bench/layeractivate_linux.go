package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/hostcompute/hostcompute/internal/mountinfo"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
)

func init() { registry = append(registry, layerActivateRows) }

// layerActivateRows time a writable layer's whole mount cycle, the work a
// container start and stop adds: hcs layer activate, prepare, a write, then
// unprepare and deactivate, on a 1 GiB dynamic VHDX scratch layer, beside the
// same mounts made by hand with mount(8) on a raw ext4 image.
func layerActivateRows(env *Env) []*Row {
	return []*Row{layerActivateRow()}
}

func layerActivateRow() *Row {
	var base, top string
	const size = 1 << 30 // as hcs layer scratch --size 1GiB below
	return &Row{
		Name: "layer activate+prepare+unprepare+deactivate: hcs on a VHDX scratch layer vs mount -o loop + mount -t overlay on raw ext4",
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if os.Geteuid() != 0 {
				return Setup{}, errors.New("needs root for loop devices, FUSE and mounts")
			}
			base, top = filepath.Join(dir, "base"), filepath.Join(dir, "top")
			for i, p := range []string{base, top} {
				var buf bytes.Buffer
				if err := sampletar.Write(&buf, sampletar.Options{Seed: env.Seed + uint64(i), Files: 200, Bytes: 4 << 20}); err != nil {
					return Setup{}, err
				}
				var parents []string
				if i == 1 {
					parents = []string{base}
				}
				if _, err := ociwclayer.ImportLayerFromTar(ctx, &buf, p, parents); err != nil {
					return Setup{}, err
				}
			}
			return Setup{
				Input: "two layer folders of 200 files (4 MB) each; a new 1 GiB scratch per run (dynamic VHDX with ext4 for hcs, a sparse raw ext4 image for the peer), made untimed",
				Notes: []string{"ours runs four hcs commands (Go start-up each) and attaches the VHDX through the FUSE raw view, whose helper starts at activate and exits at deactivate; the peer binds the raw image straight to a loop device (autoclear), with no state or counting"},
			}, nil
		},
		Peer: Side{
			Name: "mount -o loop, mount -t overlay, write, umount ×2",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				img := filepath.Join(dir, "scratch.img")
				if err := os.WriteFile(img, nil, 0o644); err != nil {
					return nil, err
				}
				if err := os.Truncate(img, size); err != nil {
					return nil, err
				}
				if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,nodiscard", img).CombinedOutput(); err != nil {
					return nil, fmt.Errorf("mkfs.ext4: %v: %s", err, out)
				}
				vol, union := filepath.Join(dir, "vol"), filepath.Join(dir, "union")
				script := fmt.Sprintf(`set -e; mkdir -p %[1]q %[2]q; mount -o loop %[3]q %[1]q; mkdir -p %[1]q/Files %[1]q/work
mount -t overlay overlay -o lowerdir=%[4]q:%[5]q,upperdir=%[1]q/Files,workdir=%[1]q/work %[2]q
echo x > %[2]q/written; umount %[2]q; umount %[1]q`, vol, union, img, filepath.Join(top, "Files"), filepath.Join(base, "Files"))
				return &Run{
					Cmds:    []*exec.Cmd{env.command(ctx, "sh", "-c", script)},
					Check:   func() error { return nothingMountedUnder(dir) },
					Cleanup: func() error { return unmountUnder(dir) },
				}, nil
			},
		},
		Ours: Side{
			Name: "hcs layer activate, prepare, write, unprepare, deactivate",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				layer := filepath.Join(dir, "ctr")
				stateEnv := []string{"HOSTCOMPUTE_STATE_DIR=" + filepath.Join(dir, "state")}
				mk := exec.CommandContext(ctx, env.HCS, "layer", "scratch", "--size", "1GiB", "--parent", top, "--parent", base, layer)
				mk.Env = append(os.Environ(), stateEnv...)
				if out, err := mk.CombinedOutput(); err != nil {
					return nil, fmt.Errorf("hcs layer scratch: %v: %s", err, out)
				}
				script := fmt.Sprintf(`set -e; %[1]q layer activate %[2]q >/dev/null; P=$(%[1]q layer prepare %[2]q)
echo x > "$P/written"; %[1]q layer unprepare %[2]q >/dev/null; %[1]q layer deactivate %[2]q >/dev/null`, env.HCS, layer)
				cmd := env.command(ctx, "sh", "-c", script)
				cmd.Env = append(os.Environ(), stateEnv...)
				return &Run{
					Cmds:    []*exec.Cmd{cmd},
					Check:   func() error { return nothingMountedUnder(dir) },
					Cleanup: func() error { return unmountUnder(dir) },
				}, nil
			},
		},
	}
}

// nothingMountedUnder reports an error if a run left a mount below dir.
func nothingMountedUnder(dir string) error {
	ms, err := mountinfo.Read()
	if err != nil {
		return err
	}
	if u := mountinfo.Under(ms, dir); len(u) > 0 {
		return fmt.Errorf("%d mounts left under %s, first %s", len(u), dir, u[0].Mountpoint)
	}
	return nil
}

// unmountUnder takes down whatever a failed run left below dir.
func unmountUnder(dir string) error {
	ms, err := mountinfo.Read()
	if err != nil {
		return err
	}
	u := mountinfo.Under(ms, dir)
	for i := len(u) - 1; i >= 0; i-- {
		exec.Command("umount", "-l", u[i].Mountpoint).Run()
	}
	return nil
}
