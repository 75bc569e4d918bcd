package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/host"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

// cimMountResult is what hcs cim mount and unmount print with -o json.
type cimMountResult struct {
	CIM         string `json:"cim,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	VolumeGUID  string `json:"volumeGUID,omitempty"`
	Mountpoint  string `json:"mountpoint"`
	PID         int    `json:"pid,omitempty"` // the helper serving the mount
}

func (a *app) newCIMMountCommand() *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:   "mount [flags] CIM CONTAINER-ID | --target DIR CIM",
		Short: "Mount a CIM read-only through FUSE",
		Long: `Mount the CIM (a .cim file or a CIM layer folder) read-only through FUSE. The
mount is served by a helper process that outlives this command.

With CONTAINER-ID the CIM is mounted as hcsshim's MountCimLayer does: at
` + wcim.DefaultMountDir + `/<volume GUID> (cim/ under
$HOSTCOMPUTE_STATE_DIR when set), where the volume GUID is the version-5 GUID of the container ID; one
container has one CIM mounted at a time. With --target DIR it is mounted at DIR.

Files, directories, symlinks and junctions (as relative symlinks inside the mount),
hard links (one inode), and the Windows times appear as on any file system; the
Windows attributes, security descriptor, EAs, reparse buffer and alternate streams
are the extended attributes user.hcs.attributes, user.hcs.sd, user.hcs.ea,
user.hcs.reparse and user.hcs.ads.<name>, and a stream can also be read as the file
"<file>:<stream>". Lookups ignore case.

hcs cim unmount ends the mount. One line is printed: the mount point; -o json
gives {"cim", "containerID", "volumeGUID", "mountpoint", "pid"}.`,
		Example: `  hcs cim mount /var/lib/hcs/snapshots/2 ctr-1
  hcs cim mount --target /mnt/layer cim-layers/2.cim`,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			switch {
			case target == "" && len(args) != 2:
				return usageErrorf("give CIM and CONTAINER-ID, or --target DIR and CIM")
			case target != "" && len(args) != 1:
				return usageErrorf("with --target give only the CIM")
			}
			if target != "" {
				return a.cimMountTarget(cmd.Context(), args[0], target)
			}
			return a.cimMountContainer(cmd.Context(), args[0], args[1])
		}),
	}
	cmd.Flags().StringVar(&target, "target", "", "mount at `DIR` instead of the container's volume path")
	return cmd
}

// cimSource resolves and checks a CIM argument for mounting.
func cimSource(arg string) (string, error) {
	p, err := cimPath(arg)
	if err != nil {
		return "", fmt.Errorf("cim mount: %w", err)
	}
	return filepath.Abs(p)
}

func (a *app) cimMountContainer(ctx context.Context, arg, containerID string) error {
	src, err := cimSource(arg)
	if err != nil {
		return err
	}
	mp, err := wcim.MountCimLayer(ctx, src, containerID)
	if err != nil {
		return err
	}
	res := cimMountResult{CIM: src, ContainerID: containerID, VolumeGUID: wcim.VolumeGUID(containerID).String(), Mountpoint: mp}
	if rec, err := mountRecordAt(mp); err == nil {
		res.PID = rec.PID
	}
	return a.result(mp, res)
}

func (a *app) cimMountTarget(ctx context.Context, arg, target string) error {
	src, err := cimSource(arg)
	if err != nil {
		return err
	}
	typed := target
	if target, err = filepath.Abs(target); err != nil {
		return err
	}
	if st, err := os.Stat(target); err != nil {
		return fmt.Errorf("cim mount: mount point %s: %w", typed, err)
	} else if !st.IsDir() {
		return fmt.Errorf("cim mount: mount point %s is not a folder: %w", typed, fs.ErrInvalid)
	}
	if rec, err := mountRecordAt(target); err == nil {
		return fmt.Errorf("cim mount: %s: %s is mounted there: %w", target, rec.Source, fs.ErrExist)
	}
	rec, err := host.MountCIM(ctx, src, target, "", "")
	if err != nil {
		return fmt.Errorf("cim mount: %w", err)
	}
	return a.result(rec.Mountpoint, cimMountResult{CIM: src, Mountpoint: rec.Mountpoint, PID: rec.PID})
}

// mountRecordAt finds the CIM mount whose mount point is dir.
func mountRecordAt(dir string) (*host.FUSEMount, error) {
	recs, err := host.Views()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if recs[i].Kind == host.CIMKind && recs[i].Mountpoint == dir {
			return &recs[i], nil
		}
	}
	return nil, fmt.Errorf("%s: no CIM mounted there: %w", dir, os.ErrNotExist)
}

func (a *app) newCIMUnmountCommand() *cobra.Command {
	var target, container string
	cmd := &cobra.Command{
		Use:   "unmount [flags] CIM CONTAINER-ID | --container CONTAINER-ID | --target DIR",
		Short: "Unmount a CIM mounted by hcs cim mount",
		Long: `Unmount a CIM and end its helper process.

With CIM and CONTAINER-ID this is hcsshim's UnmountCimLayer: the CIM must be the
one mounted for the container. --container CONTAINER-ID is CleanupContainerMounts:
whatever the container has mounted goes, also what a crashed process left behind
(a dead helper, a mount that answers "transport endpoint is not connected"), and a
mount still in use is detached lazily. --target DIR unmounts the CIM mounted at DIR.

A mount in use gives exit code 1 (except with --container); nothing mounted gives
exit code 5.`,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			switch {
			case target != "" && container == "" && len(args) == 0:
				abs, err := filepath.Abs(target)
				if err != nil {
					return err
				}
				rec, err := mountRecordAt(abs)
				if err != nil {
					return fmt.Errorf("cim unmount: %w", err)
				}
				if err := host.UnmountView(ctx, rec.ID); err != nil {
					return fmt.Errorf("cim unmount: %w", err)
				}
				return a.result("unmounted "+abs, cimMountResult{CIM: rec.Source, Mountpoint: abs})
			case container != "" && target == "" && len(args) == 0:
				mp := filepath.Join(wcim.MountDir(), wcim.VolumeGUID(container).String())
				if err := wcim.CleanupContainerMounts(container); err != nil {
					return err
				}
				return a.result("cleaned "+mp, cimMountResult{ContainerID: container, VolumeGUID: wcim.VolumeGUID(container).String(), Mountpoint: mp})
			case target == "" && container == "" && len(args) == 2:
				src, err := cimSource(args[0])
				if err != nil {
					return err
				}
				mp, err := wcim.GetCimMountPath(src, args[1])
				if err != nil {
					return err
				}
				if err := wcim.UnmountCimLayer(ctx, src, args[1]); err != nil {
					return err
				}
				return a.result("unmounted "+mp, cimMountResult{CIM: src, ContainerID: args[1], VolumeGUID: wcim.VolumeGUID(args[1]).String(), Mountpoint: mp})
			}
			return usageErrorf("give CIM and CONTAINER-ID, or --container CONTAINER-ID, or --target DIR")
		}),
	}
	cmd.Flags().StringVar(&target, "target", "", "unmount the CIM mounted at `DIR`")
	cmd.Flags().StringVar(&container, "container", "", "remove every CIM mount of `CONTAINER-ID`, also after a crash")
	return cmd
}
