package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/attach"
	"github.com/hostcompute/hostcompute/internal/loop"
	"github.com/hostcompute/hostcompute/internal/mount"
	"github.com/hostcompute/hostcompute/layers"
)

// layerMountResult is what hcs layer mount prints with -o json.
type layerMountResult struct {
	Target  string   `json:"target"`
	Rootfs  string   `json:"rootfs"`
	Scratch string   `json:"scratch"`
	Layers  []string `json:"layers"`
}

func (a *app) newLayerMountCommand() *cobra.Command {
	var (
		scratch, target, size, id string
	)
	cmd := &cobra.Command{
		Use:   "mount --scratch DISK --target DIR [flags] LAYER...",
		Short: "Mount a stack of Linux layer disks with a scratch disk as a container root",
		Long: `Mount Linux layers, ext4 images such as tar2ext4 -vhd writes them (raw, fixed
VHD, or any VHD/VHDX), as one overlay union with a writable scratch disk, the way
hcsshim's MountLCOWLayers does. LAYER arguments go top-most first: the first one
hides the others.

Under --target the scratch disk is mounted, and in it rootfs/ is the union, upper/
and work/ are the overlay's writable layer and work directory, and layers/<i> holds
the read-only layers (0 the top-most). The scratch disk is made when it does not
exist: a sparse fixed VHD of --scratch-size bytes (default 20G) formatted ext4.

The mounts stay after the command exits; hcs layer unmount TARGET removes them. At
most 500 layers can be stacked. A target that already has mounts is refused (exit
code 4); unmount it first.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if scratch == "" || target == "" {
				return usageErrorf("--scratch and --target are required")
			}
			if len(args) > mount.MaxLowerLayers {
				return usageErrorf("%d layers: a union holds at most %d", len(args), mount.MaxLowerLayers)
			}
			opts := []layers.Option{layers.WithLogger(a.log)}
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return usageErrorf("--scratch-size: %v", err)
				}
				opts = append(opts, layers.WithScratchSize(n))
			}
			return a.layerMount(cmd.Context(), id, scratch, target, args, opts)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&scratch, "scratch", "", "writable scratch `DISK`, made when missing")
	f.StringVar(&size, "scratch-size", "", "size of a new scratch disk, e.g. 20G (binary units)")
	f.StringVar(&target, "target", "", "`DIR` to mount the scratch disk at; the union is DIR/rootfs")
	f.StringVar(&id, "id", "", "container ID recorded as the union's mount source (default: the target's name)")
	return cmd
}

func (a *app) layerMount(ctx context.Context, id, scratch, target string, args []string, opts []layers.Option) error {
	var err error
	if target, err = filepath.Abs(target); err != nil {
		return err
	}
	if id == "" {
		id = filepath.Base(target)
	}
	ls := &layers.LCOWLayers{}
	disks := []string{scratch}
	for _, l := range args {
		ls.Layers = append(ls.Layers, &layers.LCOWLayer{VHDPath: l})
		disks = append(disks, l)
	}
	ls.ScratchVHDPath = scratch
	infos, err := mount.Mounts()
	if err != nil {
		return err
	}
	if m := mount.Under(infos, target); len(m) > 0 {
		return fmt.Errorf("layer mount: %s: %w: %d mounts there (hcs layer unmount %s removes them)", target, layers.ErrAlreadyMounted, len(m), target)
	}
	// A mount that crashed may have left a disk attached through a raw view
	// without mounting it; such an attachment, mounted nowhere, is ended.
	for _, d := range disks {
		att, err := attach.Get(d)
		if err != nil {
			continue
		}
		if mps, err := attach.MountPoints(att); err == nil && len(mps) == 0 {
			a.log.Debug("ending an unused attachment left by an earlier run", logKeyFile, d, "device", att.Device)
			if err := attach.Detach(ctx, att.Device); err != nil {
				return fmt.Errorf("layer mount: ending the stale attachment of %s: %w", d, err)
			}
		}
	}
	start := time.Now()
	rootfs, scratchPath, _, err := layers.MountLCOWLayers(ctx, id, ls, target, nil, opts...)
	if errors.Is(err, layers.ErrInvalidArgument) {
		return usageError{fmt.Errorf("layer mount: %w", err)}
	}
	if err != nil {
		return fmt.Errorf("layer mount: %w", err)
	}
	// The closer is dropped on purpose: the mounts outlive this process, and
	// hcs layer unmount finds them again in the mount table.
	a.log.Debug("mounted", "target", target, "layers", len(args), logKeyElapsed, time.Since(start))
	return a.result(fmt.Sprintf("rootfs:  %s\nscratch: %s", rootfs, scratchPath),
		layerMountResult{Target: target, Rootfs: rootfs, Scratch: scratchPath, Layers: args})
}

// layerUnmountResult is what hcs layer unmount prints with -o json.
type layerUnmountResult struct {
	Target    string   `json:"target"`
	Unmounted []string `json:"unmounted"`
	Detached  []string `json:"detached"`
}

func (a *app) newLayerUnmountCommand() *cobra.Command {
	var lazy bool
	cmd := &cobra.Command{
		Use:   "unmount [flags] TARGET",
		Short: "Unmount what hcs layer mount mounted at TARGET and detach its disks",
		Long: `Unmount everything mounted at TARGET or below it, the union first and the
scratch disk last, and detach the loop devices (and raw views) of the disks. What to
undo is read from the kernel's mount table, so this also cleans up after a mount
command that crashed half-way.

A mount still in use (a process working in it) is refused (exit code 1) unless
--lazy is given: then it is detached from the file system tree at once and released
by the kernel when its last user goes, and its disks are detached then. A TARGET
with nothing mounted gives exit code 5.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			return a.layerUnmount(cmd.Context(), args[0], lazy)
		}),
	}
	cmd.Flags().BoolVar(&lazy, "lazy", false, "detach busy mounts lazily (MNT_DETACH) instead of failing")
	return cmd
}

func (a *app) layerUnmount(ctx context.Context, target string, lazy bool) error {
	abs, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	infos, err := mount.Mounts()
	if err != nil {
		return err
	}
	under := mount.Under(infos, abs)
	if len(under) == 0 {
		return fmt.Errorf("layer unmount: %s: nothing mounted there: %w", abs, os.ErrNotExist)
	}
	// The devices, with the files behind them, before they go.
	type dev struct{ path, backing string }
	var devs []dev
	for _, m := range under {
		if strings.HasPrefix(m.Source, "/dev/loop") {
			b, _ := os.ReadFile("/sys/block/" + filepath.Base(m.Source) + "/loop/backing_file")
			devs = append(devs, dev{m.Source, strings.TrimSpace(string(b))})
		}
	}
	done, err := mount.UnmountAll(abs, lazy)
	res := layerUnmountResult{Target: abs, Unmounted: []string{}, Detached: []string{}}
	for _, m := range done {
		res.Unmounted = append(res.Unmounted, m.MountPoint)
	}
	if err != nil {
		if errors.Is(err, mount.ErrBusy) {
			err = fmt.Errorf("%w (stop what uses it, or give --lazy)", err)
		}
		return fmt.Errorf("layer unmount: %w", err)
	}
	for i := len(devs) - 1; i >= 0; i-- {
		d := devs[i]
		if ok, err := a.detachLayerDevice(ctx, d.path, d.backing, lazy); err != nil {
			return fmt.Errorf("layer unmount: %w", err)
		} else if ok {
			res.Detached = append(res.Detached, d.path)
		}
	}
	return a.result(fmt.Sprintf("unmounted %d, detached %d under %s", len(res.Unmounted), len(res.Detached), abs), res)
}

// detachLayerDevice ends the attachment of a loop device whose mount is gone: a
// raw-view attachment through internal/attach, an autoclear device by waiting for the
// kernel to clear it, any other device still bound to the same file by detaching it.
// It reports whether the device was detached (false when it was lazily unmounted and
// is still in use).
func (a *app) detachLayerDevice(ctx context.Context, dev, backing string, lazy bool) (bool, error) {
	if att, err := attach.Get(dev); err == nil {
		if err := attach.Detach(ctx, att.Device); err != nil {
			if lazy && errors.Is(err, attach.ErrBusy) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	name := filepath.Base(dev)
	still := func() bool {
		b, err := os.ReadFile("/sys/block/" + name + "/loop/backing_file")
		return err == nil && strings.TrimSpace(string(b)) == backing
	}
	for deadline := time.Now().Add(2 * time.Second); still() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !still() {
		return true, nil
	}
	if lazy {
		return false, nil // still held by a lazily unmounted file system
	}
	a.log.Debug("detaching a loop device without autoclear", "device", dev, logKeyFile, backing)
	if err := loop.DetachPath(dev); err != nil {
		return false, err
	}
	return true, nil
}
