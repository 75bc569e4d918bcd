package attach

import (
	"errors"
	"fmt"
	"os"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// ErrCannotGrow means the disk's format cannot be grown by this package.
// It matches errors.ErrUnsupported.
var ErrCannotGrow = fmt.Errorf("attach: growing this disk format is not supported: %w", errors.ErrUnsupported)

// resizer is a disk that can change its virtual size in place.
type resizer interface {
	Resize(size int64) error
}

// GrowFile grows the virtual size of the disk file at path to size bytes (a
// multiple of 512) and reports whether it changed; a disk as large or larger
// is left alone. The disk must not be attached: use Grow for an attached
// disk. Raw files are extended sparsely; fixed VHDs get their footer moved
// to the new end; other formats grow through package vhd (Disk.Resize).
// A differencing VHDX grows past its parent (what it does not hold reads
// through to the parent, and as zeros past the parent's end); a differencing
// VHD cannot grow: the error matches ErrCannotGrow.
func GrowFile(path string, size int64) (bool, error) { return growFile(path, size, false) }

// growFile is GrowFile; raw takes the file as a raw image whatever it holds
// (an attachment made with Options.Raw).
func growFile(path string, size int64, raw bool) (bool, error) {
	if size <= 0 || size%512 != 0 {
		return false, fmt.Errorf("attach: growing %s: size %d is not a positive multiple of 512", path, size)
	}
	detect := Detect
	if raw {
		detect = detectRaw
	}
	info, err := detect(path)
	if err != nil {
		return false, err
	}
	if info.Size >= size {
		return false, nil
	}
	switch info.Format {
	case FormatRaw:
		return true, growRaw(path, size)
	case FormatVHDFixed:
		return true, growFixedVHD(path, info.Size, size)
	}
	d, err := OpenDisk(path, false)
	if err != nil {
		return false, err
	}
	r, ok := d.(resizer)
	if !ok {
		d.Close()
		return false, fmt.Errorf("%w (%s: %s)", ErrCannotGrow, path, info.Format)
	}
	if err := r.Resize(size); err != nil {
		d.Close()
		if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, vhd.ErrUnsupported) {
			return false, fmt.Errorf("%w (%s: %s): %w", ErrCannotGrow, path, info.Format, err)
		}
		return false, err
	}
	return true, d.Close()
}

func growRaw(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// growFixedVHD moves the footer of a fixed VHD from oldSize to size. The new
// footer is written and synced before the old one is cleared, so a crash
// leaves either the old disk or the new one; at worst the old footer's 512
// bytes stay inside the new space, where no file system has anything yet.
func growFixedVHD(path string, oldSize, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, vhd.FooterSize)
	if _, err := f.ReadAt(b, oldSize); err != nil {
		return fmt.Errorf("reading the footer of %s: %w", path, err)
	}
	footer, err := vhd.ParseFooterAt(b, oldSize)
	if err != nil {
		return err
	}
	footer.CurrentSize = uint64(size)
	footer.Geometry = vhd.GeometryForSize(size)
	nb, err := footer.MarshalBinary()
	if err != nil {
		return err
	}
	// Sparse zeros up to the new footer, then the footer.
	if err := f.Truncate(size + vhd.FooterSize); err != nil {
		return err
	}
	if _, err := f.WriteAt(nb, size); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if _, err := f.WriteAt(make([]byte, vhd.FooterSize), oldSize); err != nil {
		return err
	}
	return f.Sync()
}
