package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func (a *app) newVHDCreateCommand() *cobra.Command {
	var typ, size, blockSize, parent, format string
	var sectorSize int
	cmd := &cobra.Command{
		Use:   "create [flags] FILE",
		Short: "Create an empty virtual disk",
		Long: `Create a new virtual disk at FILE, which must not exist (exit code 4).

--format is vhd (the default) or vhdx, --type fixed, dynamic (the default) or
differencing. A fixed VHD is created sparse; a fixed VHDX has every block
allocated on the host. A dynamic disk has no block allocated. A differencing disk
needs --parent (a disk of the same format), takes its size and sector size from
it, and stores the parent as a relative and an absolute path (VHDX: and the
parent's DataWriteGuid, so the parent must not be written afterwards).

--size is required for fixed and dynamic disks and is a multiple of the logical
sector size: 512 bytes, or 4096 for a VHDX made with --logical-sector-size 4096
(which qemu cannot open). --block-size defaults to 2M for a VHD, 32M for a
fixed or dynamic VHDX and 2M for a differencing VHDX.`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			switch typ {
			case "fixed", "dynamic", "differencing":
			default:
				return usageErrorf("invalid --type %q: want fixed, dynamic or differencing", typ)
			}
			switch format {
			case formatVHD:
				if sectorSize != 0 && sectorSize != vhd.SectorSize {
					return usageErrorf("a VHD has 512-byte sectors")
				}
			case formatVHDX:
				if sectorSize != 0 && sectorSize != 512 && sectorSize != 4096 {
					return usageErrorf("invalid --logical-sector-size %d: want 512 or 4096", sectorSize)
				}
			default:
				return usageErrorf("invalid --format %q: want vhd or vhdx", format)
			}
			if (typ == "differencing") != (parent != "") {
				if parent == "" {
					return usageErrorf("--type differencing needs --parent")
				}
				return usageErrorf("--parent is only for --type differencing")
			}
			if typ == "differencing" && size != "" {
				return usageErrorf("--size is taken from the parent of a differencing disk")
			}
			if typ != "differencing" && size == "" {
				return usageErrorf("--size is required for a %s disk", typ)
			}
			return nil
		},
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			path := args[0]
			var n, bs int64
			var err error
			if size != "" {
				if n, err = parseSize(size); err != nil {
					return usageError{err}
				}
			}
			if blockSize != "" {
				if bs, err = parseSize(blockSize); err != nil {
					return usageError{err}
				}
				if bs > 1<<31 {
					return usageErrorf("invalid --block-size %q", blockSize)
				}
			}
			if err := existing(path); err != nil {
				return fmt.Errorf("create: %w", err)
			}
			if format == formatVHDX {
				err = vhd.CreateVHDX(path, vhd.VHDXCreateOptions{Size: n, BlockSize: uint32(bs), Fixed: typ == "fixed",
					Parent: parent, LogicalSectorSize: uint32(sectorSize)})
				if err == nil {
					var d *vhd.Disk
					if d, err = vhd.Open(path, true); err == nil {
						n = d.Size()
						sectorSize = d.LogicalSectorSize()
						err = d.Close()
					}
				}
			} else {
				t := map[string]vhd.DiskType{"fixed": vhd.Fixed, "dynamic": vhd.Dynamic, "differencing": vhd.Differencing}[typ]
				var d *vhd.Disk
				d, err = vhd.Create(path, vhd.CreateOptions{Type: t, Size: n, BlockSize: uint32(bs), Parent: parent})
				if err == nil {
					n = d.Size()
					sectorSize = vhd.SectorSize
					err = d.Close()
				}
			}
			if errors.Is(err, vhd.ErrInvalidOptions) {
				return usageError{err}
			}
			if err != nil {
				return fmt.Errorf("create: %w", err)
			}
			return a.result(fmt.Sprintf("created %s %s disk %s of %d bytes", typ, format, path, n),
				map[string]any{"file": path, "format": format, "type": typ, "virtualSize": n, "logicalSectorSize": sectorSize, "parent": parent})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "dynamic", "disk `TYPE`: fixed, dynamic or differencing")
	f.StringVar(&size, "size", "", "virtual size, such as 10G")
	f.StringVar(&blockSize, "block-size", "", "block size (default 2M for VHD and differencing VHDX, 32M for other VHDX)")
	f.IntVar(&sectorSize, "logical-sector-size", 0, "logical sector size of a VHDX: 512 (default) or 4096")
	f.StringVar(&parent, "parent", "", "parent `FILE` of a differencing disk")
	f.StringVar(&format, "format", formatVHD, "file `FORMAT`: vhd or vhdx")
	return cmd
}
