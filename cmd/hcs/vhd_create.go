package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/internal/staging"
	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func (a *app) newVHDCreateCommand() *cobra.Command {
	var typ, size, blockSize, parent, format string
	var sectorSize int
	cmd := &cobra.Command{
		Use:   "create [flags] FILE",
		Short: "Create an empty virtual disk",
		Long: `Create a new virtual disk at FILE, which must not exist (exit code 4).

The format follows FILE's name: .vhdx makes a VHDX, .vhd a VHD; --format vhd or
vhdx says otherwise, and is needed for other names. --type fixed, dynamic (the default) or
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
			if format == "" {
				switch vhd.FormatFromName(args[0]) {
				case vhd.FormatVHDX:
					format = formatVHDX
				case vhd.FormatVHD:
					format = formatVHD
				default:
					return usageErrorf("cannot tell the format from the name %s: give --format vhd or --format vhdx", args[0])
				}
			}
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
			// The disk is made under a temporary name and linked into place when
			// complete, so an interruption leaves nothing and a DST made meanwhile
			// is not replaced (exit code 4).
			a.stagingIn("staging", filepath.Dir(path))
			final := path
			path = staging.Name(final)
			defer os.Remove(path)
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
			if err == nil {
				err = cmd.Context().Err()
			}
			if err == nil {
				err = commitFile(path, final)
			}
			path = final
			if errors.Is(err, vhd.ErrInvalidOptions) {
				return usageError{err}
			}
			if err != nil {
				return fmt.Errorf("create: %w", err)
			}
			return a.result(fmt.Sprintf("created %s %s disk %s of %d bytes", typ, format, path, n),
				vhdCreateResult{Disk: Disk{File: absPath(path), Format: format, VirtualSize: n}, Type: typ, LogicalSectorSize: sectorSize, Parent: absPath(parent)})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "dynamic", "disk `TYPE`: fixed, dynamic or differencing")
	f.StringVar(&size, "size", "", "virtual size, such as 10G")
	f.StringVar(&blockSize, "block-size", "", "block size (default 2M for VHD and differencing VHDX, 32M for other VHDX)")
	f.IntVar(&sectorSize, "logical-sector-size", 0, "logical sector size of a VHDX: 512 (default) or 4096")
	f.StringVar(&parent, "parent", "", "parent `FILE` of a differencing disk")
	f.StringVar(&format, "format", "", "file `FORMAT`: vhd or vhdx (default from FILE's name)")
	return cmd
}

// vhdCreateResult is the -o json document of vhd create.
type vhdCreateResult struct {
	Disk
	Type              string `json:"type"`
	LogicalSectorSize int    `json:"logicalSectorSize"`
	Parent            string `json:"parent,omitempty"`
}

// commitFile syncs the complete file tmp and links it to final, which must
// not exist (a file made there meanwhile gives an error matching fs.ErrExist),
// then removes tmp and syncs the folder.
func commitFile(tmp, final string) error {
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Link(tmp, final); err != nil {
		return err
	}
	os.Remove(tmp)
	syncDir(filepath.Dir(final))
	return nil
}
