package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func init() { registry = append(registry, attachRows) }

// attachRows compare reading and writing a disk through its block device: a
// dynamic VHDX attached through the FUSE raw view (hcs vhd attach) against a
// raw image on a plain loop device (hcs vhd attach binds raw files directly).
func attachRows(env *Env) []*Row {
	size := int64(1 << 30)
	if env.Quick {
		size = 256 << 20
	}
	return []*Row{attachReadRow(size), attachWriteRow(size)}
}

// attachScript attaches disk, runs dd with the device as $D, and detaches:
// attach and detach (the raw view's helper start and exit) are timed too.
func attachScript(env *Env, ctx context.Context, stateDir, disk, readOnly, dd string) *exec.Cmd {
	format := "auto"
	if strings.HasSuffix(disk, ".raw") {
		format = "raw" // random data: raw only when we say so
	}
	script := fmt.Sprintf(`set -e; D=$(%q vhd attach --format %s %s %q); %s; %q vhd detach "$D" >/dev/null`, env.HCS, format, readOnly, disk, dd, env.HCS)
	cmd := env.command(ctx, "sh", "-c", script)
	cmd.Env = append(os.Environ(), "HOSTCOMPUTE_STATE_DIR="+stateDir)
	return cmd
}

// attachInputs writes a raw image of random data and the same disk as a
// dynamic VHDX (32 MiB blocks, the default, every block allocated) into dir.
func attachInputs(env *Env, dir string, size int64) (raw, vhdx string, err error) {
	if os.Geteuid() != 0 {
		return "", "", errors.New("needs root for loop devices and FUSE mounts")
	}
	raw = filepath.Join(dir, "disk.raw")
	vhdx = filepath.Join(dir, "disk.vhdx")
	f, err := os.Create(raw)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if err := vhd.CreateVHDX(vhdx, vhd.VHDXCreateOptions{Size: size}); err != nil {
		return "", "", err
	}
	d, err := vhd.Open(vhdx, false)
	if err != nil {
		return "", "", err
	}
	defer d.Close()
	rng := rand.NewChaCha8([32]byte{byte(env.Seed), byte(env.Seed >> 8), 'a', 't', 't'})
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := io.ReadFull(rng, buf); err != nil {
			return "", "", err
		}
		if _, err := f.Write(buf); err != nil {
			return "", "", err
		}
		if _, err := d.WriteAt(buf, off); err != nil {
			return "", "", err
		}
	}
	if err := f.Sync(); err != nil {
		return "", "", err
	}
	return raw, vhdx, d.Flush()
}

const attachNote = "both attached with hcs vhd attach (a raw file goes straight to a loop device; the VHDX through the FUSE raw view and a loop device over its file); attach and detach are timed; dd with O_DIRECT on the device, so the device's page cache is bypassed and the backing files' host page cache is warm on both sides; the raw view helper's memory is not in peak RSS (it is not a child of the timed command)"

func attachReadRow(size int64) *Row {
	var raw, vhdx, state string
	return &Row{
		Name: fmt.Sprintf("attach: dd read %s through the device, raw view of dynamic VHDX vs loop on raw", sizeIEC(size)),
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			var err error
			if raw, vhdx, err = attachInputs(env, dir, size); err != nil {
				return Setup{}, err
			}
			state = dir
			return Setup{
				Input: fmt.Sprintf("%s of random data: a raw image and a dynamic VHDX with 32 MiB blocks, all allocated", sizeIEC(size)),
				Bytes: size,
				Warm:  []string{raw, vhdx},
				Notes: []string{attachNote},
			}, nil
		},
		Peer: Side{
			Name: "loop on raw: attach, dd bs=1M iflag=direct, detach",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				return &Run{Cmds: []*exec.Cmd{attachScript(env, ctx, state, raw, "--read-only",
					`dd if="$D" of=/dev/null bs=1M iflag=direct status=none`)}}, nil
			},
		},
		Ours: Side{
			Name: "raw view of VHDX: attach, dd bs=1M iflag=direct, detach",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				return &Run{Cmds: []*exec.Cmd{attachScript(env, ctx, state, vhdx, "--read-only",
					`dd if="$D" of=/dev/null bs=1M iflag=direct status=none`)}}, nil
			},
		},
	}
}

func attachWriteRow(size int64) *Row {
	var src, state string
	return &Row{
		Name: fmt.Sprintf("attach: dd write %s through the device, raw view of new dynamic VHDX vs loop on new raw", sizeIEC(size)),
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			var err error
			if src, _, err = attachInputs(env, dir, size); err != nil {
				return Setup{}, err
			}
			state = dir
			return Setup{
				Input: fmt.Sprintf("%s of random data written over a new empty disk (sparse raw file, or dynamic VHDX with 32 MiB blocks)", sizeIEC(size)),
				Bytes: size,
				Warm:  []string{src},
				Notes: []string{attachNote + "; dd conv=fsync, and detach flushes the VHDX; the raw view writes new blocks' BAT entries at the flush, after syncing their data (vhd.Disk.BatchAllocations), not one sync per block allocation"},
			}, nil
		},
		Peer: Side{
			Name: "loop on raw: attach, dd bs=1M oflag=direct conv=fsync, detach",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				disk := filepath.Join(dir, "disk.raw")
				if err := os.WriteFile(disk, nil, 0o644); err != nil {
					return nil, err
				}
				if err := os.Truncate(disk, size); err != nil {
					return nil, err
				}
				return &Run{Cmds: []*exec.Cmd{attachScript(env, ctx, state, disk, "",
					fmt.Sprintf(`dd if=%q of="$D" bs=1M oflag=direct conv=fsync status=none`, src))}}, nil
			},
		},
		Ours: Side{
			Name: "raw view of VHDX: attach, dd bs=1M oflag=direct conv=fsync, detach",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				disk := filepath.Join(dir, "disk.vhdx")
				if err := vhd.CreateVHDX(disk, vhd.VHDXCreateOptions{Size: size}); err != nil {
					return nil, err
				}
				return &Run{Cmds: []*exec.Cmd{attachScript(env, ctx, state, disk, "",
					fmt.Sprintf(`dd if=%q of="$D" bs=1M oflag=direct conv=fsync status=none`, src))}}, nil
			},
		},
	}
}
