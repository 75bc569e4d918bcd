package vhd

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// VHDX BAT entry states ([MS-VHDX] §2.5.1).
const (
	VHDXBlockNotPresent       = 0
	VHDXBlockUndefined        = 1
	VHDXBlockZero             = 2
	VHDXBlockUnmapped         = 3
	vhdxBlockUnmappedDraft    = 5 // the v0.95 draft's value, still seen
	VHDXBlockFullyPresent     = 6
	VHDXBlockPartiallyPresent = 7
	vhdxBATReservedMask       = 0xFFFF8 // bits 3–19
	vhdxSectorsPerBitmapBlock = 1 << 23
)

// VHDXDisk is a fixed or dynamic VHDX opened for reading. Differencing VHDX and
// files whose log needs replaying are not supported yet.
type VHDXDisk struct {
	mu     sync.Mutex
	f      io.ReaderAt
	c      io.Closer
	info   VHDXInfo
	bat    []uint64
	chunk  int64 // chunk ratio: payload blocks per sector bitmap block
	bs     int64
	size   int64
	closed bool
}

// OpenVHDX opens a VHDX file read-only; the file is never modified. A file with a
// non-empty log (it was not closed cleanly) and a differencing disk give errors
// matching ErrUnsupported.
func OpenVHDX(path string) (*VHDXDisk, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	d, err := NewVHDXReader(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhd: opening %s: %w", path, err)
	}
	d.c = f
	return d, nil
}

// NewVHDXReader reads a VHDX image of fileSize bytes from f, as OpenVHDX does for a
// file. Close does nothing on the result.
func NewVHDXReader(f io.ReaderAt, fileSize int64) (*VHDXDisk, error) {
	info, err := ReadVHDXInfo(f)
	if err != nil {
		return nil, err
	}
	hdrOff := int64(vhdxHeader1Offset)
	if info.HeaderIndex == 1 {
		hdrOff = vhdxHeader2Offset
	}
	if info.Header.LogGUID != (guid.GUID{}) {
		return nil, formatErr("VHDX header", hdrOff+48, fmt.Errorf("%w: the log must be replayed first (qemu-img check -r all)", ErrUnsupported))
	}
	if info.HasParent {
		return nil, fmt.Errorf("%w: differencing VHDX", ErrUnsupported)
	}
	d := &VHDXDisk{f: f, info: *info, bs: int64(info.BlockSize), size: int64(info.VirtualDiskSize)}
	d.chunk = int64(vhdxSectorsPerBitmapBlock) * int64(info.LogicalSectorSize) / d.bs
	pb := (d.size + d.bs - 1) / d.bs
	entries := pb + (pb-1)/d.chunk
	region, _ := info.Regions.Region(VHDXRegionBAT)
	batOff := int64(region.FileOffset)
	if entries*8 > int64(region.Length) || batOff+entries*8 > fileSize {
		return nil, formatErr("VHDX BAT", batOff, fmt.Errorf("%w: %d entries, region of %d bytes, file of %d bytes", ErrTruncated, entries, region.Length, fileSize))
	}
	raw := make([]byte, entries*8)
	if _, err := f.ReadAt(raw, batOff); err != nil {
		return nil, formatErr("VHDX BAT", batOff, ioErr(err))
	}
	d.bat = make([]uint64, entries)
	for i := range d.bat {
		e := binary.LittleEndian.Uint64(raw[8*i:])
		d.bat[i] = e
		off := batOff + 8*int64(i)
		if e&vhdxBATReservedMask != 0 {
			return nil, formatErrf("VHDX BAT", off, "entry %d: reserved bits set (0x%X)", i, e)
		}
		state, fileOff := e&7, int64(e>>20)<<20
		if (int64(i)+1)%(d.chunk+1) == 0 {
			// A sector bitmap entry: only meaningful for differencing disks.
			if state != 0 {
				return nil, formatErrf("VHDX BAT", off, "entry %d: sector bitmap state %d in a disk without parent", i, state)
			}
			continue
		}
		switch state {
		case VHDXBlockFullyPresent:
			if fileOff < vhdxMiB || fileOff+d.bs > fileSize {
				return nil, formatErrf("VHDX BAT", off, "entry %d: block at %d outside the file of %d bytes", i, fileOff, fileSize)
			}
		case VHDXBlockNotPresent, VHDXBlockUndefined, VHDXBlockZero, VHDXBlockUnmapped, vhdxBlockUnmappedDraft:
		default:
			return nil, formatErrf("VHDX BAT", off, "entry %d: state %d invalid in a disk without parent", i, state)
		}
	}
	return d, nil
}

// Info returns what was read from the headers, region table and metadata.
func (d *VHDXDisk) Info() VHDXInfo { return d.info }

// Size returns the virtual disk size in bytes.
func (d *VHDXDisk) Size() int64 { return d.size }

// ReadAt reads the virtual disk like io.ReaderAt. Blocks that are not present,
// zero or unmapped read as zeros.
func (d *VHDXDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vhd: read at negative offset %d", off)
	}
	if off >= d.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > d.size-off {
		p, eof = p[:d.size-off], io.EOF
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		k, in := pos/d.bs, pos%d.bs
		n := int(min(int64(len(p)-done), d.bs-in))
		e := d.bat[k+k/d.chunk]
		if e&7 == VHDXBlockFullyPresent {
			blockOff := int64(e>>20) << 20
			if _, err := d.f.ReadAt(p[done:done+n], blockOff+in); err != nil {
				return done, formatErr(fmt.Sprintf("VHDX block %d", k), blockOff, ioErr(err))
			}
		} else {
			clear(p[done : done+n])
		}
		done += n
	}
	return done, eof
}

// Close closes the file.
func (d *VHDXDisk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return os.ErrClosed
	}
	d.closed = true
	if d.c == nil {
		return nil
	}
	return d.c.Close()
}
