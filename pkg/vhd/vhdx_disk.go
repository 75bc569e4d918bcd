package vhd

import (
	"crypto/rand"
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

// VHDXDisk is an open fixed or dynamic VHDX. Differencing VHDX and files whose
// log needs replaying are not supported yet.
type VHDXDisk struct {
	mu     sync.Mutex
	f      io.ReaderAt
	c      io.Closer
	w      *os.File // nil when read-only
	info   VHDXInfo
	bat    []uint64
	batOff int64
	chunk  int64 // chunk ratio: payload blocks per sector bitmap block
	bs     int64
	size   int64
	closed bool

	// Writing.
	started   bool  // headers updated for this session
	nextBlock int64 // where the next payload block goes (1 MiB aligned)
}

// OpenVHDX opens a VHDX file. With readOnly the file is opened O_RDONLY and never
// modified. A file with a non-empty log (it was not closed cleanly) and a
// differencing disk give errors matching ErrUnsupported.
//
// Writable disks update both headers (new FileWriteGuid and DataWriteGuid, higher
// sequence numbers) before the first write, and allocate blocks at the end of the
// file, writing the block's data before its BAT entry. The BAT entry is written in
// place, not through the log.
func OpenVHDX(path string, readOnly bool) (*VHDXDisk, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
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
	if !readOnly {
		d.w = f
	}
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
	d.batOff = batOff
	d.nextBlock = fileSize
	for _, r := range info.Regions.Entries {
		d.nextBlock = max(d.nextBlock, int64(r.FileOffset)+int64(r.Length))
	}
	d.nextBlock = max(d.nextBlock, int64(info.Header.LogOffset)+int64(info.Header.LogLength))
	d.nextBlock = (d.nextBlock + vhdxMiB - 1) / vhdxMiB * vhdxMiB
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
	done, err := forEachBlock(p, off, d.bs, func(part []byte, k, in int64) error {
		e := d.bat[k+k/d.chunk]
		if e&7 != VHDXBlockFullyPresent {
			clear(part)
			return nil
		}
		blockOff := int64(e>>20) << 20
		if _, err := d.f.ReadAt(part, blockOff+in); err != nil {
			return formatErr(fmt.Sprintf("VHDX block %d", k), blockOff, ioErr(err))
		}
		return nil
	})
	if err != nil {
		return done, err
	}
	return done, eof
}

// WriteAt writes len(p) bytes at off, which must lie within the disk. Blocks that
// are not present are allocated at the end of the file; the rest of a new block
// reads as zeros.
func (d *VHDXDisk) WriteAt(p []byte, off int64) (int, error) {
	if d.w == nil {
		return 0, ErrReadOnly
	}
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return 0, fmt.Errorf("%w: %d bytes at %d, size %d", ErrOutOfRange, len(p), off, d.size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	if !d.started {
		if err := d.startSession(); err != nil {
			return 0, err
		}
	}
	done, err := forEachBlock(p, off, d.bs, func(part []byte, k, in int64) error {
		idx := k + k/d.chunk
		e := d.bat[idx]
		if e&7 != VHDXBlockFullyPresent {
			var err error
			if e, err = d.allocate(idx); err != nil {
				return err
			}
		}
		_, err := d.w.WriteAt(part, int64(e>>20)<<20+in)
		return err
	})
	return done, err
}

// allocate gives BAT entry idx a new zero-filled block at the end of the file.
func (d *VHDXDisk) allocate(idx int64) (uint64, error) {
	off := d.nextBlock
	if err := d.w.Truncate(off + d.bs); err != nil {
		return 0, err
	}
	// The block must be durable before the BAT entry points at it.
	if err := d.w.Sync(); err != nil {
		return 0, err
	}
	e := uint64(off) | VHDXBlockFullyPresent
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], e)
	if _, err := d.w.WriteAt(b[:], d.batOff+8*idx); err != nil {
		return 0, err
	}
	d.bat[idx] = e
	d.nextBlock = off + d.bs
	return e, nil
}

// startSession writes new headers before the first write of this open: new
// FileWriteGuid and DataWriteGuid, the non-current slot first, then the other, each
// with a higher sequence number, so both slots end valid and current.
func (d *VHDXDisk) startSession() error {
	h := d.info.Header
	var a, b [16]byte
	if _, err := rand.Read(a[:]); err != nil {
		return err
	}
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	h.FileWriteGUID, h.DataWriteGUID = guid.FromArray(a), guid.FromArray(b)
	slots := []int64{vhdxHeader1Offset, vhdxHeader2Offset}
	idx := 1 - d.info.HeaderIndex
	for range 2 {
		h.SequenceNumber++
		hb, _ := h.MarshalBinary()
		if _, err := d.w.WriteAt(hb, slots[idx]); err != nil {
			return err
		}
		if err := d.w.Sync(); err != nil {
			return err
		}
		d.info.HeaderIndex = idx
		idx = 1 - idx
	}
	d.info.Header = h
	d.started = true
	return nil
}

// Flush syncs a writable disk to stable storage.
func (d *VHDXDisk) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return os.ErrClosed
	}
	if d.w == nil {
		return nil
	}
	return d.w.Sync()
}

// Close syncs a writable disk and closes the file.
func (d *VHDXDisk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return os.ErrClosed
	}
	d.closed = true
	var err error
	if d.w != nil {
		err = d.w.Sync()
	}
	if d.c != nil {
		if cerr := d.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
