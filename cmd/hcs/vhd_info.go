package main

import (
	"errors"
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
	UniqueID       string `json:"uniqueID"`
	Parent         string `json:"parent,omitempty"`
	ParentUniqueID string `json:"parentUniqueID,omitempty"`
	Creator        string `json:"creator"`
	SectorSize     int    `json:"logicalSectorSize"`
	PhysicalSector int    `json:"physicalSectorSize,omitempty"`
	// Log is the state of a VHDX log: "empty", or "pending" when it holds
	// updates to replay (LogEntries of them).
	Log        string `json:"log,omitempty"`
	LogEntries int    `json:"logEntries,omitempty"`
	FileSize   int64  `json:"fileSize"`
	Allocated  int64  `json:"allocated"`
}

func (a *app) newVHDInfoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info FILE",
		Short: "Describe a VHD or VHDX disk",
		Long: `Print the format (vhd or vhdx), the disk type, the virtual size, the block size,
the unique ID (the virtual disk ID of a VHDX), the creator, the sector sizes,
and the bytes the file takes on the host. A differencing disk also shows its
parent, which must be found (exit code 5 when it is missing), and the parent's
identity the child records (the unique ID of a VHD parent, the parent_linkage
DataWriteGuid of a VHDX parent). For a VHDX, the log is "empty" or "pending"
with the number of entries a writable open (hcs vhd resize, or qemu-img check
-r all) would replay; the parent of a disk with a pending log is shown as its
locator names it.`,
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
	info := &vhdInfo{File: absPath(path), FileSize: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		info.Allocated = sys.Blocks * 512
	}
	format, err := detectFormatPath(path)
	if errors.Is(err, vhd.ErrUnknownFormat) {
		format, err = formatVHD, nil // pkg/vhd names what is wrong with it
	}
	if err != nil {
		return nil, err
	}
	info.Format = format
	if format == formatVHDX {
		return readVHDXInfo(path, info)
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
	info.SectorSize = vhd.SectorSize
	if h := d.Header(); h != nil {
		info.BlockSize = int64(h.BlockSize)
		if d.Type() == vhd.Differencing {
			info.ParentUniqueID = formatID(h.ParentUniqueID)
		}
	}
	if p := d.Parent(); p != nil {
		info.Parent = absPath(p.Path())
	}
	return info, nil
}

// readVHDXInfo fills info for a VHDX. A disk with a pending log cannot be opened
// read-only: its structures are described as they are before replay.
func readVHDXInfo(path string, info *vhdInfo) (*vhdInfo, error) {
	var x *vhd.VHDXInfo
	d, err := openVHD(path)
	switch {
	case err == nil:
		defer d.Close()
		x = d.VHDXInfo()
		info.Log = "empty"
		if p := d.Parent(); p != nil {
			info.Parent = absPath(p.Path())
		}
	case errors.Is(err, vhd.ErrLogReplayNeeded):
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if x, err = vhd.ReadVHDXInfo(f); err != nil {
			return nil, err
		}
		entries, err := vhd.ReadVHDXLog(f, x.Header, info.FileSize)
		if err != nil {
			return nil, err
		}
		info.Log, info.LogEntries = "pending", len(entries)
		if l := x.ParentLocator; l != nil {
			info.Parent = l.Get(vhd.VHDXKeyRelativePath)
		}
	default:
		return nil, err
	}
	info.Type = "dynamic"
	switch {
	case x.HasParent:
		info.Type = "differencing"
		if l := x.ParentLocator; l != nil {
			info.ParentUniqueID = strings.ToLower(strings.Trim(l.Get(vhd.VHDXKeyParentLinkage), "{}"))
		}
	case x.LeaveBlockAllocated:
		info.Type = "fixed"
	}
	info.VirtualSize = int64(x.VirtualDiskSize)
	info.BlockSize = int64(x.BlockSize)
	info.UniqueID = strings.ToLower(x.VirtualDiskID.String())
	info.Creator = x.Creator
	info.SectorSize, info.PhysicalSector = int(x.LogicalSectorSize), int(x.PhysicalSectorSize)
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
	fmt.Fprintf(&b, "sector size:   %d", i.SectorSize)
	if i.PhysicalSector != 0 {
		fmt.Fprintf(&b, " (physical %d)", i.PhysicalSector)
	}
	b.WriteString("\n")
	if i.Log != "" {
		fmt.Fprintf(&b, "log:           %s", i.Log)
		if i.LogEntries > 0 {
			fmt.Fprintf(&b, " (%d entries to replay)", i.LogEntries)
		}
		b.WriteString("\n")
	}
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
