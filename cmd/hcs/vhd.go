package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

func (a *app) newVHDCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vhd",
		Short: "Create, inspect, check and convert VHD and VHDX virtual disks",
		Long: `Virtual disks in the VHD and VHDX formats, each fixed, dynamic or
differencing. A differencing disk reads through its chain of parents.

Sizes accept the binary suffixes K, M, G and T (optionally followed by "iB" or
"B"): 64M is 67108864 bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		a.newVHDCreateCommand(),
		a.newVHDInfoCommand(),
		a.newVHDCheckCommand(),
		a.newVHDConvertCommand(),
		a.newVHDResizeCommand(),
		a.newVHDAttachCommand(),
		a.newVHDDetachCommand(),
	)
	return cmd
}

// Disk file formats.
const (
	formatRaw  = "raw"
	formatVHD  = "vhd"
	formatVHDX = "vhdx"
)

// parseSize parses a byte count with an optional binary suffix: K, M, G, T, also
// written KiB or KB.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "IB")
	t = strings.TrimSuffix(t, "B")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift != 0 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes with an optional K, M, G or T suffix", s)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n << shift, nil
}

// detectFormatPath tells the format of the disk at path from its content
// (vhd.Probe): formatVHDX, formatVHD (also for a VHD whose footer is damaged:
// pkg/vhd names the problem when it is opened) or formatRaw for a recognised
// raw image. Anything else is an error matching vhd.ErrUnknownFormat that
// says how to take the file as raw.
func detectFormatPath(path string) (string, error) {
	p, err := vhd.ProbeFile(path)
	switch {
	case p.Format == vhd.FormatVHDX:
		return formatVHDX, nil
	case p.Format == vhd.FormatVHD:
		return formatVHD, nil
	case errors.Is(err, vhd.ErrUnknownFormat):
		return "", fmt.Errorf("%s: %w (for a raw disk image, give --format raw)", path, vhd.ErrUnknownFormat)
	case err != nil:
		return "", err
	}
	return formatRaw, nil
}

// virtualDisk is an open disk of any format.
type virtualDisk interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// rawDisk is a raw image read as a disk.
type rawDisk struct {
	*os.File
	size int64
}

func (r rawDisk) Size() int64 { return r.size }

// diskFormats are the values of a --format flag that names the format of an
// existing disk; "" (auto) tells it from the content.
var diskFormats = []string{"auto", formatRaw, formatVHD, formatVHDX}

func checkDiskFormat(flag, v string) error {
	if !slices.Contains(diskFormats, v) {
		return usageErrorf("invalid --%s %q: want auto, raw, vhd or vhdx", flag, v)
	}
	return nil
}

// openDisk opens path read-only. choice is what the user said the format is:
// "auto" (or "") tells it from the content, where a raw image is accepted only
// when allowRaw and its content is recognised (a file system or partition
// table); "raw" takes any regular file as a raw image; "vhd" and "vhdx" must
// match the content.
func openDisk(path, choice string, allowRaw bool) (virtualDisk, string, error) {
	if choice == formatRaw {
		return openRaw(path)
	}
	format, err := detectFormatPath(path)
	if err != nil {
		return nil, "", err
	}
	if choice != "" && choice != "auto" && choice != format {
		return nil, "", fmt.Errorf("%s: --format %s, but the file is %s: %w", path, choice, format, vhd.ErrInvalidFormat)
	}
	if format == formatRaw && allowRaw {
		return openRaw(path)
	}
	// Anything else must be a VHD or VHDX; pkg/vhd names what is wrong with it.
	d, err := openVHD(path)
	if err != nil {
		return nil, "", err
	}
	return d, d.Format().String(), nil
}

func openRaw(path string) (virtualDisk, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, "", fmt.Errorf("%s is not a regular file", path)
	}
	return rawDisk{f, st.Size()}, formatRaw, nil
}

// openVHD opens a VHD or VHDX read-only. A parent with another identity than the
// child records makes the chain corrupt: the error then matches
// vhd.ErrInvalidFormat too.
func openVHD(path string) (*vhd.Disk, error) {
	d, err := vhd.Open(path, true)
	if errors.Is(err, vhd.ErrParentMismatch) {
		err = fmt.Errorf("%w (%w)", err, vhd.ErrInvalidFormat)
	}
	return d, err
}

// formatID formats a 16-byte unique ID the way VHD tools print it.
func formatID(b [16]byte) string {
	s := hex.EncodeToString(b[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// diskTypeName is the lower-case name of a VHD disk type.
func diskTypeName(t vhd.DiskType) string {
	switch t {
	case vhd.Fixed:
		return "fixed"
	case vhd.Dynamic:
		return "dynamic"
	case vhd.Differencing:
		return "differencing"
	}
	return strings.ToLower(t.String())
}

// errExists reports that a destination exists, matching fs.ErrExist.
func errExists(path string) error {
	return fmt.Errorf("%s: %w", path, os.ErrExist)
}

// existing returns errExists when path exists (even as a dangling link).
func existing(path string) error {
	_, err := os.Lstat(path)
	if err == nil {
		return errExists(path)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
