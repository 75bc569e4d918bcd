package attach

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// Format is the container format of a disk file.
type Format string

// Disk formats, as Detect reports them.
const (
	FormatRaw              Format = "raw"
	FormatVHDFixed         Format = "vhd-fixed"
	FormatVHDDynamic       Format = "vhd-dynamic"
	FormatVHDDifferencing  Format = "vhd-differencing"
	FormatVHDXFixed        Format = "vhdx-fixed"
	FormatVHDXDynamic      Format = "vhdx-dynamic"
	FormatVHDXDifferencing Format = "vhdx-differencing"
)

// RawBacked reports whether the virtual disk is a contiguous range of the
// file (from offset 0), so that a loop device can be bound to it directly.
func (f Format) RawBacked() bool { return f == FormatRaw || f == FormatVHDFixed }

// Info is what Detect learns about a disk file.
type Info struct {
	Format Format
	// Size is the virtual size in bytes.
	Size int64
}

// Detect reads the structures of the disk at path and reports its format and
// virtual size. The format is told from the content (vhd.Probe): a raw image
// only when it holds a file system or partition table vhd.Probe recognises;
// anything else gives an error matching vhd.ErrUnknownFormat (attach it with
// Options.Raw). Damaged VHD and VHDX structures, a VHD footer cut short
// included, give package vhd's typed errors.
func Detect(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("attach: %s is not a regular file", path)
	}
	probed, err := vhd.Probe(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("attach: %s: %w", path, err)
	}
	if probed.Format == vhd.FormatRaw {
		return &Info{Format: FormatRaw, Size: fi.Size()}, nil
	}
	var head [8]byte
	if _, err := f.ReadAt(head[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if string(head[:]) == "vhdxfile" {
		info, err := vhd.ReadVHDXInfo(f)
		if err != nil {
			return nil, fmt.Errorf("attach: %s: %w", path, err)
		}
		format := FormatVHDXDynamic
		switch {
		case info.HasParent:
			format = FormatVHDXDifferencing
		case info.LeaveBlockAllocated:
			format = FormatVHDXFixed
		}
		return &Info{Format: format, Size: int64(info.VirtualDiskSize)}, nil
	}
	if fi.Size() >= vhd.FooterSize {
		var b [vhd.FooterSize]byte
		if _, err := f.ReadAt(b[:], fi.Size()-vhd.FooterSize); err != nil {
			return nil, err
		}
		if bytes.HasPrefix(b[:], []byte("conectix")) || bytes.Equal(head[:], []byte("conectix")) {
			footer, err := vhd.ParseFooterAt(b[:], fi.Size()-vhd.FooterSize)
			if err != nil {
				return nil, fmt.Errorf("attach: %s: %w", path, err)
			}
			format := FormatVHDFixed
			switch footer.DiskType {
			case vhd.Dynamic:
				format = FormatVHDDynamic
			case vhd.Differencing:
				format = FormatVHDDifferencing
			}
			return &Info{Format: format, Size: int64(footer.CurrentSize)}, nil
		}
	}
	return &Info{Format: FormatRaw, Size: fi.Size()}, nil
}

// detectRaw describes the file at path as a raw image.
func detectRaw(path string) (*Info, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("attach: %s is not a regular file", path)
	}
	return &Info{Format: FormatRaw, Size: fi.Size()}, nil
}

// Disk is an open virtual disk: the operations the raw view needs.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	Flush() error
	Close() error
}

// OpenDisk opens the disk at path for reading (and writing unless readOnly)
// through package vhd, whatever its format; a raw file is opened as it is.
func OpenDisk(path string, readOnly bool) (Disk, error) {
	info, err := Detect(path)
	if err != nil {
		return nil, err
	}
	switch info.Format {
	case FormatRaw:
		flag := os.O_RDWR
		if readOnly {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return nil, err
		}
		return &rawDisk{f, info.Size}, nil
	default:
		d, err := vhd.Open(path, readOnly)
		if err != nil {
			// Return a nil interface, not an interface holding a nil *vhd.Disk.
			return nil, err
		}
		return d, nil
	}
}

// rawDisk is a raw image file as a Disk.
type rawDisk struct {
	f    *os.File
	size int64
}

func (r *rawDisk) ReadAt(p []byte, off int64) (int, error)  { return r.f.ReadAt(p, off) }
func (r *rawDisk) WriteAt(p []byte, off int64) (int, error) { return r.f.WriteAt(p, off) }
func (r *rawDisk) Size() int64                              { return r.size }
func (r *rawDisk) Flush() error                             { return r.f.Sync() }
func (r *rawDisk) Close() error                             { return r.f.Close() }
