package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/host"
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
			if len(args) > host.MaxLowerLayers {
				return usageErrorf("%d layers: a union holds at most %d", len(args), host.MaxLowerLayers)
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
	for _, l := range args {
		ls.Layers = append(ls.Layers, &layers.LCOWLayer{VHDPath: l})
	}
	ls.ScratchVHDPath = scratch
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
		layerMountResult{Target: absPath(target), Rootfs: absPath(rootfs), Scratch: absPath(scratchPath), Layers: absPaths(args)})
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
	res, err := layers.UnmountAll(ctx, target, lazy)
	if errors.Is(err, host.ErrBusy) {
		return fmt.Errorf("layer unmount: %w (stop what uses it, or give --lazy)", err)
	}
	if err != nil {
		return fmt.Errorf("layer unmount: %w", err)
	}
	abs, _ := filepath.Abs(target)
	return a.result(fmt.Sprintf("unmounted %d, detached %d under %s", len(res.MountPoints), len(res.Devices), abs),
		layerUnmountResult{Target: abs, Unmounted: res.MountPoints, Detached: res.Devices})
}
