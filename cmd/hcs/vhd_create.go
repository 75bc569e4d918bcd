package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func (a *app) newVHDCreateCommand() *cobra.Command {
	var typ, size, blockSize, parent, format string
	cmd := &cobra.Command{
		Use:   "create [flags] FILE",
		Short: "Create an empty virtual disk",
		Long: `Create a new virtual disk at FILE, which must not exist (exit code 4).

A fixed VHD is created sparse, a dynamic disk with no block allocated. A
differencing disk needs --parent and takes its size from the parent; the parent
is stored as a relative and an absolute path. --format vhdx makes a dynamic VHDX
(the only VHDX type that can be created). --size is required for fixed and
dynamic disks and is a multiple of 512 bytes.`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			switch typ {
			case "fixed", "dynamic", "differencing":
			default:
				return usageErrorf("invalid --type %q: want fixed, dynamic or differencing", typ)
			}
			switch format {
			case formatVHD:
			case formatVHDX:
				if typ != "dynamic" {
					return usageErrorf("--format vhdx can only create dynamic disks")
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
				err = vhd.CreateVHDX(path, vhd.VHDXCreateOptions{Size: n, BlockSize: uint32(bs)})
			} else {
				t := map[string]vhd.DiskType{"fixed": vhd.Fixed, "dynamic": vhd.Dynamic, "differencing": vhd.Differencing}[typ]
				var d *vhd.Disk
				d, err = vhd.Create(path, vhd.CreateOptions{Type: t, Size: n, BlockSize: uint32(bs), Parent: parent})
				if err == nil {
					n = d.Size()
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
				map[string]any{"file": path, "format": format, "type": typ, "virtualSize": n})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "dynamic", "disk `TYPE`: fixed, dynamic or differencing")
	f.StringVar(&size, "size", "", "virtual size, such as 10G")
	f.StringVar(&blockSize, "block-size", "", "block size of dynamic disks (default 2M for VHD, 32M for VHDX)")
	f.StringVar(&parent, "parent", "", "parent `FILE` of a differencing disk")
	f.StringVar(&format, "format", formatVHD, "file `FORMAT`: vhd or vhdx")
	return cmd
}
