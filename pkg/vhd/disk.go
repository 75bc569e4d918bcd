package vhd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Format is the file format of a disk.
type Format int

// File formats.
const (
	FormatVHD Format = iota + 1
	FormatVHDX
)

func (f Format) String() string {
	switch f {
	case FormatVHD:
		return "vhd"
	case FormatVHDX:
		return "vhdx"
	case FormatRaw:
		return "raw"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// maxChainDepth bounds the number of parents opened for one differencing disk, so
// that a locator pointing back into its own chain cannot recurse without end.
const maxChainDepth = 32

// backend is the format-specific part of a Disk. Disk checks bounds, the closed
// state and read-only mode, and holds the lock while it calls these.
type backend interface {
	read(p []byte, off int64) error
	write(p []byte, off int64) error
	sync() error
	close() error
	// resize changes the virtual size to size, already checked to be a positive
	// multiple of the logical sector size.
	resize(size int64) error
}

// Disk is an open virtual disk of any format and type: fixed, dynamic or
// differencing VHD or VHDX. It reads and writes the virtual disk with ReadAt and
// WriteAt like an [io.ReaderAt] and [io.WriterAt]; its methods may be called from
// several goroutines.
type Disk struct {
	mu       sync.Mutex
	path     string
	format   Format
	typ      DiskType
	readOnly bool
	size     int64
	sector   int64 // logical sector size
	parent   *Disk
	closed   bool
	b        backend

	// Exactly one is set, by format.
	vhd  *vhdFile
	vhdx *vhdxFile
}

// Open opens the disk at path, a VHD or a VHDX of any type; the format is
// detected from the file. With readOnly the file is opened O_RDONLY and never
// modified; otherwise WriteAt and Resize are allowed. The parent of a differencing
// disk is opened read-only and checked against the identity the child records
// (the unique ID of a VHD parent, the DataWriteGuid of a VHDX parent).
//
// A VHDX whose log is not empty (the writer did not close it cleanly) is replayed
// when opened for writing; opened read-only it gives an error matching
// [ErrLogReplayNeeded].
func Open(path string, readOnly bool) (*Disk, error) {
	return openDepth(path, readOnly, 0)
}

func openDepth(path string, readOnly bool, depth int) (*Disk, error) {
	if depth > maxChainDepth {
		return nil, fmt.Errorf("%w: more than %d parents", ErrUnsupported, maxChainDepth)
	}
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	var head [8]byte
	if _, err := f.ReadAt(head[:], 0); err != nil && err != io.EOF {
		f.Close()
		return nil, err
	}
	var d *Disk
	if bytes.Equal(head[:], []byte(vhdxSignature)) {
		d, err = openVHDXFile(f, path, readOnly, depth, nil)
	} else {
		d, err = openVHDFile(f, path, readOnly, depth, nil)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhd: opening %s: %w", path, err)
	}
	return d, nil
}

// Size returns the virtual size in bytes.
func (d *Disk) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.size
}

// Format returns the file format, FormatVHD or FormatVHDX.
func (d *Disk) Format() Format { return d.format }

// Type returns the disk type: Fixed, Dynamic or Differencing.
func (d *Disk) Type() DiskType { return d.typ }

// LogicalSectorSize returns the sector size of the virtual disk: 512 for a VHD,
// 512 or 4096 for a VHDX.
func (d *Disk) LogicalSectorSize() int { return int(d.sector) }

// BlockSize returns the block size of a dynamic or differencing disk, and of a
// fixed VHDX; 0 for a fixed VHD.
func (d *Disk) BlockSize() int64 {
	if d.vhdx != nil {
		return d.vhdx.bs
	}
	return d.vhd.blockSize
}

// Parent returns the open parent of a differencing disk, or nil.
func (d *Disk) Parent() *Disk { return d.parent }

// Path returns the path the disk was opened or created with.
func (d *Disk) Path() string { return d.path }

// Footer returns a copy of a VHD's footer; the zero Footer for a VHDX.
func (d *Disk) Footer() Footer {
	if d.vhd == nil {
		return Footer{}
	}
	return d.vhd.footer
}

// Header returns a copy of the dynamic disk header of a dynamic or differencing
// VHD, or nil.
func (d *Disk) Header() *DynamicHeader {
	if d.vhd == nil || d.vhd.header == nil {
		return nil
	}
	h := *d.vhd.header
	return &h
}

// VHDXInfo returns what was read from a VHDX's headers, region table and
// metadata (as of the open or the last resize), or nil for a VHD.
func (d *Disk) VHDXInfo() *VHDXInfo {
	if d.vhdx == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	info := d.vhdx.info
	return &info
}

// ReadAt reads len(p) bytes of the virtual disk at off. It follows io.ReaderAt:
// fewer bytes come only with an error, io.EOF at the end of the disk. Unallocated
// blocks read as zeros, or from the parent of a differencing disk.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vhd: read at negative offset %d", off)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
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
	if err := d.b.read(p, off); err != nil {
		return 0, err
	}
	return len(p), eof
}

// WriteAt writes len(p) bytes to the virtual disk at off. The whole range must lie
// within the disk. Blocks of dynamic and differencing disks are allocated on
// first write; a write of zeros to an unallocated block of a dynamic disk
// allocates nothing. Partial sectors of a differencing disk are completed with
// the parent's data.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, ErrReadOnly
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return 0, fmt.Errorf("%w: %d bytes at %d, size %d", ErrOutOfRange, len(p), off, d.size)
	}
	if err := d.b.write(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Resize changes the virtual size in place to size, a positive multiple of the
// logical sector size. Growing is supported for fixed and dynamic disks of both
// formats; the new space reads as zeros. Shrinking is allowed only when nothing
// past the new end is allocated or non-zero; otherwise it fails with
// [ErrShrinkUnsafe] and changes nothing. A differencing disk keeps its parent's
// size and gives ErrUnsupported.
func (d *Disk) Resize(size int64) error {
	if d.readOnly {
		return ErrReadOnly
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return os.ErrClosed
	}
	if size <= 0 || size%d.sector != 0 {
		return fmt.Errorf("%w: size %d is not a positive multiple of %d", ErrInvalidOptions, size, d.sector)
	}
	if d.typ == Differencing && (d.vhdx == nil || size < d.size) {
		// A differencing VHDX grows: its new blocks are "not present",
		// read through to the parent, which reads zeros past its own end.
		// Shrinking one, or resizing a differencing VHD, is not done.
		what := "shrinking a differencing VHDX"
		if d.vhdx == nil {
			what = "resizing a differencing VHD (it has its parent's size)"
		}
		return fmt.Errorf("%w: %s", ErrUnsupported, what)
	}
	if size == d.size {
		return nil
	}
	if err := d.b.resize(size); err != nil {
		return err
	}
	d.size = size
	return nil
}

// DeferSync stops the disk from syncing the file on each block allocation (a
// VHDX does so to have the block's data durable before the BAT entry that refers
// to it); Flush and Close still sync. It is meant for writing a new disk that is
// thrown away if anything fails, such as a conversion into a temporary file:
// after a machine crash, a block allocated since the last Flush may be referenced
// before its data reached the disk.
func (d *Disk) DeferSync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.vhdx != nil {
		d.vhdx.deferSync = true
	}
}

// BatchAllocations makes a writable VHDX write the metadata of new blocks at
// the next Flush (or Close) instead of syncing the file on each allocation,
// as a disk with a volatile write cache: what was written before a Flush
// returned is durable, and a crash may lose what came after. The order that
// keeps the file consistent still holds: a block's BAT entry (and the sector
// bitmap bits of a differencing disk) reach the file only after a sync of the
// data they expose, so after a crash a block allocated since the last Flush
// reads as it did before it was allocated (zeros, or the parent's data), never
// as space that was not written; its space in the file is left unused.
// Overwrites of allocated blocks are not synced either way until Flush. Other
// formats ignore it.
func (d *Disk) BatchAllocations() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if x := d.vhdx; x != nil && !d.readOnly && !x.batch {
		x.batch = true
		x.pendingBAT = map[int64]struct{}{}
		x.pendingBM = map[int64][2]int64{}
	}
}

// FileExtent reports where the virtual disk's bytes at off are stored as they
// are in a VHDX's own file: the file offset of the byte at off and how many of
// the n bytes from there follow contiguously (at most n, and not past the
// block). ok is false where they are not so stored: in blocks that read as
// zeros or from a parent, partially present blocks, past the end, and in a VHD.
// A block once allocated stays where it is while the disk is open (Resize moves
// only the BAT), so the caller may read that range of the file itself, with
// its own descriptor, instead of ReadAt copying it: the kernel can then move the
// data (splice) without a copy through this process.
func (d *Disk) FileExtent(off, n int64) (fileOff, length int64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	x := d.vhdx
	if d.closed || x == nil || off < 0 || n <= 0 || off >= d.size {
		return 0, 0, false
	}
	k, in := off/x.bs, off%x.bs
	e := x.bat[x.payloadEntry(k)]
	if e&7 != VHDXBlockFullyPresent {
		return 0, 0, false
	}
	return int64(e>>20)<<20 + in, min(n, x.bs-in, d.size-off), true
}

// Flush syncs the file to stable storage.
func (d *Disk) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return os.ErrClosed
	}
	if d.readOnly {
		return nil
	}
	return d.b.sync()
}

// Close syncs a writable disk and closes it and its parents.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return os.ErrClosed
	}
	d.closed = true
	var errs []error
	if !d.readOnly {
		errs = append(errs, d.b.sync())
	}
	errs = append(errs, d.b.close())
	if d.parent != nil {
		errs = append(errs, d.parent.Close())
	}
	return errors.Join(errs...)
}

// readParent reads from parent, or zeros without one or beyond its size.
func readParent(parent *Disk, p []byte, off int64) error {
	if parent == nil {
		clear(p)
		return nil
	}
	n, err := parent.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	clear(p[n:])
	return err
}

// ioErr turns the end of the file in the middle of a structure into ErrTruncated.
func ioErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
