package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// vhdInfo is the result of vhd info.
type vhdInfo struct {
	File           string `json:"file"`
	Format         string `json:"format"`
	Type           string `json:"type"`
	VirtualSize    int64  `json:"virtualSize"`
	BlockSize      int64  `json:"blockSize,omitempty"`
	UniqueID       string `json:"uniqueId"`
	Parent         string `json:"parent,omitempty"`
	ParentUniqueID string `json:"parentUniqueId,omitempty"`
	Creator        string `json:"creator"`
	FileSize       int64  `json:"fileSize"`
	Allocated      int64  `json:"allocated"`
}

func (a *app) newVHDInfoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info FILE",
		Short: "Describe a VHD or VHDX disk",
		Long: `Print the format (vhd or vhdx), the disk type, the virtual size, the block size,
the unique ID (the virtual disk ID of a VHDX), the creator, and the bytes the
file takes on the host. A differencing VHD also shows its parent, which must be
found (exit code 5 when it is missing), and the parent's unique ID.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			info, err := readVHDInfo(args[0])
			if err != nil {
				return fmt.Errorf("info: %w", err)
			}
			return a.result(info.text(), info)
		}),
	}
}

func readVHDInfo(path string) (*vhdInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	info := &vhdInfo{File: path, FileSize: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		info.Allocated = sys.Blocks * 512
	}
	format, err := detectFormatPath(path)
	if err != nil {
		return nil, err
	}
	info.Format = format
	if format == formatVHDX {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		x, err := vhd.ReadVHDXInfo(f)
		if err != nil {
			return nil, err
		}
		info.Type = "dynamic"
		switch {
		case x.HasParent:
			info.Type = "differencing"
		case x.LeaveBlockAllocated:
			info.Type = "fixed"
		}
		info.VirtualSize = int64(x.VirtualDiskSize)
		info.BlockSize = int64(x.BlockSize)
		info.UniqueID = strings.ToLower(x.VirtualDiskID.String())
		info.Creator = x.Creator
		return info, nil
	}
	// Anything else must be a VHD; pkg/vhd names what is wrong with it.
	d, err := openVHD(path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	info.Format = formatVHD
	ft := d.Footer()
	info.Type = diskTypeName(d.Type())
	info.VirtualSize = d.Size()
	info.UniqueID = formatID(ft.UniqueID)
	info.Creator = fmt.Sprintf("%s %d.%d", strings.TrimRight(string(ft.CreatorApp[:]), " \x00"), ft.CreatorVersion>>16, ft.CreatorVersion&0xFFFF)
	if h := d.Header(); h != nil {
		info.BlockSize = int64(h.BlockSize)
		if d.Type() == vhd.Differencing {
			info.ParentUniqueID = formatID(h.ParentUniqueID)
		}
	}
	if p := d.Parent(); p != nil {
		info.Parent = p.Path()
	}
	return info, nil
}

func (i *vhdInfo) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "file:          %s\n", i.File)
	fmt.Fprintf(&b, "format:        %s\n", i.Format)
	fmt.Fprintf(&b, "type:          %s\n", i.Type)
	fmt.Fprintf(&b, "virtual size:  %d (%s)\n", i.VirtualSize, humanBytes(i.VirtualSize))
	if i.BlockSize != 0 {
		fmt.Fprintf(&b, "block size:    %d (%s)\n", i.BlockSize, humanBytes(i.BlockSize))
	}
	fmt.Fprintf(&b, "unique id:     %s\n", i.UniqueID)
	if i.Parent != "" || i.ParentUniqueID != "" {
		fmt.Fprintf(&b, "parent:        %s\n", i.Parent)
		fmt.Fprintf(&b, "parent id:     %s\n", i.ParentUniqueID)
	}
	fmt.Fprintf(&b, "creator:       %s\n", i.Creator)
	fmt.Fprintf(&b, "file size:     %d\n", i.FileSize)
	fmt.Fprintf(&b, "allocated:     %d (%s)", i.Allocated, humanBytes(i.Allocated))
	return b.String()
}

// humanBytes formats n with a binary unit: "64 MiB", "1.5 GiB".
func humanBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v := float64(n)
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".") + " " + units[u]
}
