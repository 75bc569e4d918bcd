package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Short names of the disk types for CreateOptions.
const (
	Fixed        = DiskTypeFixed
	Dynamic      = DiskTypeDynamic
	Differencing = DiskTypeDifferencing
)

// MaxDynamicSize is the largest dynamic or differencing disk Create makes, the
// specification's 2040 GiB.
const MaxDynamicSize = 2040 << 30

// maxChainDepth bounds the number of parents opened for one differencing disk, so
// that a locator pointing back into its own chain cannot recurse without end.
const maxChainDepth = 32

// CreateOptions describes a disk for [Create].
type CreateOptions struct {
	// Type is Fixed, Dynamic or Differencing.
	Type DiskType
	// Size is the virtual size in bytes, a positive multiple of 512. For a
	// differencing disk 0 means the parent's size.
	Size int64
	// BlockSize is the block size of dynamic and differencing disks, a power of two
	// from 512 bytes to MaxBlockSize. 0 means DefaultBlockSize (2 MiB).
	BlockSize uint32
	// Parent is the path of the parent disk of a differencing disk. It is stored as a
	// relative (W2ru) and an absolute (W2ku) parent locator.
	Parent string
	// UniqueID identifies the new disk. All zeros means 16 random bytes.
	UniqueID [16]byte
	// Timestamp is the creation time written to the footer. The zero time means now.
	Timestamp time.Time
	// CreatorApp is the creator application field. All zeros means
	// DefaultCreatorApp ("win ").
	CreatorApp [4]byte
}

// Disk is an open VHD of any type. It reads and writes the virtual disk with
// ReadAt and WriteAt; its methods may be called from several goroutines.
type Disk struct {
	mu       sync.Mutex
	f        *os.File
	path     string
	readOnly bool
	footer   Footer
	size     int64

	// Dynamic and differencing disks only.
	header     *DynamicHeader
	bat        []uint32
	blockSize  int64
	bitmapSize int64
	nextBlock  int64 // where the next block goes: the trailing footer's offset
	parent     *Disk
	parentPath string
	bitmap     []byte
}

// Create makes a new disk at path, which must not exist, and returns it open for
// reading and writing. A fixed disk is created sparse (its data area is a hole);
// a dynamic disk has an empty BAT; a differencing disk refers to opts.Parent,
// which is opened read-only and must not be written while the child exists.
func Create(path string, opts CreateOptions) (d *Disk, err error) {
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.UniqueID == [16]byte{} {
		if _, err := rand.Read(opts.UniqueID[:]); err != nil {
			return nil, err
		}
	}
	if opts.Timestamp.IsZero() {
		opts.Timestamp = time.Now()
	}
	if opts.CreatorApp == [4]byte{} {
		opts.CreatorApp = DefaultCreatorApp
	}
	var parent *Disk
	switch opts.Type {
	case Fixed, Dynamic:
		if opts.Parent != "" {
			return nil, fmt.Errorf("%w: a parent for a %s disk", ErrInvalidOptions, opts.Type)
		}
	case Differencing:
		if opts.Parent == "" {
			return nil, fmt.Errorf("%w: differencing disk without a parent", ErrInvalidOptions)
		}
		parent, err = Open(opts.Parent, true)
		if err != nil {
			return nil, fmt.Errorf("vhd: opening parent: %w", err)
		}
		defer func() {
			if err != nil {
				parent.Close()
			}
		}()
		if opts.Size == 0 {
			opts.Size = parent.Size()
		}
	default:
		return nil, fmt.Errorf("%w: disk type %v", ErrInvalidOptions, opts.Type)
	}
	if opts.Size <= 0 || opts.Size%SectorSize != 0 {
		return nil, fmt.Errorf("%w: size %d is not a positive multiple of %d", ErrInvalidOptions, opts.Size, SectorSize)
	}
	if opts.Type != Fixed {
		if bs := opts.BlockSize; bs < SectorSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
			return nil, fmt.Errorf("%w: block size %d is not a power of two from 512 to %d", ErrInvalidOptions, bs, MaxBlockSize)
		}
		if opts.Size > MaxDynamicSize {
			return nil, fmt.Errorf("%w: size %d above the %d bytes of a dynamic disk", ErrInvalidOptions, opts.Size, int64(MaxDynamicSize))
		}
	}

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	footer := NewFixedFooter(opts.Size, opts.Timestamp, opts.UniqueID)
	footer.CreatorApp = opts.CreatorApp
	if opts.Type == Fixed {
		if err := f.Truncate(opts.Size); err != nil {
			return nil, err
		}
		if err := AppendFixedFooter(f, opts.Size, footer); err != nil {
			return nil, err
		}
	} else if err := writeDynamic(f, path, footer, opts, parent); err != nil {
		return nil, err
	}
	d, err = newDisk(f, path, false, 0, parent)
	if err != nil {
		return nil, fmt.Errorf("vhd: reopening new disk %s: %w", path, err)
	}
	return d, nil
}

// writeDynamic writes the footer copy, dynamic header, BAT, parent locators and
// trailing footer of a new dynamic or differencing disk.
func writeDynamic(f *os.File, path string, footer *Footer, opts CreateOptions, parent *Disk) error {
	footer.DiskType = opts.Type
	footer.DataOffset = FooterSize
	entries := uint32((opts.Size + int64(opts.BlockSize) - 1) / int64(opts.BlockSize))
	h := &DynamicHeader{
		DataOffset:      FixedDataOffset,
		TableOffset:     FooterSize + DynamicHeaderSize,
		HeaderVersion:   Version,
		MaxTableEntries: entries,
		BlockSize:       opts.BlockSize,
	}
	end := int64(h.TableOffset) + batBytes(entries)
	var locatorData [][]byte
	if parent != nil {
		h.ParentUniqueID = parent.footer.UniqueID
		h.ParentTimeStamp = parent.footer.TimeStamp
		h.ParentName = filepath.Base(opts.Parent)
		abs, err := filepath.Abs(opts.Parent)
		if err != nil {
			return err
		}
		childAbs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(filepath.Dir(childAbs), abs)
		if err != nil {
			return err
		}
		rel = strings.ReplaceAll(rel, "/", `\`)
		if !strings.HasPrefix(rel, "..") {
			rel = `.\` + rel
		}
		locs := []struct {
			code uint32
			path string
		}{
			{PlatformWindowsRelative, rel},
			{PlatformWindowsAbsolute, strings.ReplaceAll(abs, "/", `\`)},
		}
		for i, l := range locs {
			data := encodeUTF16LE(l.path)
			space := (int64(len(data)) + SectorSize - 1) / SectorSize * SectorSize
			h.ParentLocators[i] = ParentLocator{
				PlatformCode: l.code,
				DataSpace:    uint32(space / SectorSize),
				DataLength:   uint32(len(data)),
				DataOffset:   uint64(end),
			}
			locatorData = append(locatorData, data)
			end += space
		}
	}
	hb, err := h.MarshalBinary()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	fb, _ := footer.MarshalBinary()
	bat := make([]byte, batBytes(entries))
	for i := range bat {
		bat[i] = 0xFF
	}
	writes := []struct {
		b   []byte
		off int64
	}{
		{fb, 0},
		{hb, FooterSize},
		{bat, int64(h.TableOffset)},
		{fb, end},
	}
	for i, l := range locatorData {
		writes = append(writes, struct {
			b   []byte
			off int64
		}{l, int64(h.ParentLocators[i].DataOffset)})
	}
	for _, w := range writes {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			return err
		}
	}
	return nil
}

// Open opens the disk at path. With readOnly the file is opened O_RDONLY and never
// modified; otherwise WriteAt is allowed. The parent of a differencing disk is
// opened read-only, found through the parent locators (relative path first, then
// absolute, then the parent name next to the child) and checked by unique ID.
func Open(path string, readOnly bool) (*Disk, error) {
	return openDepth(path, readOnly, 0)
}

func openDepth(path string, readOnly bool, depth int) (*Disk, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	d, err := newDisk(f, path, readOnly, depth, nil)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhd: opening %s: %w", path, err)
	}
	return d, nil
}

// newDisk reads and validates the structures of an open file. parent, if not nil,
// is used instead of resolving the parent locators.
func newDisk(f *os.File, path string, readOnly bool, depth int, parent *Disk) (*Disk, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	fileSize := fi.Size()
	if fileSize < FooterSize {
		return nil, formatErr("footer", fileSize, fmt.Errorf("%w: file of %d bytes has no footer", ErrTruncated, fileSize))
	}
	footerOff := fileSize - FooterSize
	b := make([]byte, DynamicHeaderSize)
	if _, err := f.ReadAt(b[:FooterSize], footerOff); err != nil {
		return nil, formatErr("footer", footerOff, ioErr(err))
	}
	footer, err := ParseFooterAt(b[:FooterSize], footerOff)
	if err != nil {
		return nil, err
	}
	d := &Disk{f: f, path: path, readOnly: readOnly, footer: *footer, size: int64(footer.CurrentSize)}
	if footer.DiskType == DiskTypeFixed {
		if d.size > footerOff {
			return nil, formatErr("footer", footerOff+footerOffCurrent, fmt.Errorf("%w: current size %d, but %d bytes before the footer", ErrTruncated, d.size, footerOff))
		}
		return d, nil
	}

	hdrOff := int64(footer.DataOffset)
	if hdrOff+DynamicHeaderSize > footerOff {
		return nil, formatErr("dynamic header", hdrOff, fmt.Errorf("%w: header does not fit before the footer at %d", ErrTruncated, footerOff))
	}
	if _, err := f.ReadAt(b, hdrOff); err != nil {
		return nil, formatErr("dynamic header", hdrOff, ioErr(err))
	}
	h, err := ParseDynamicHeaderAt(b, hdrOff)
	if err != nil {
		return nil, err
	}
	d.header = h
	d.blockSize = int64(h.BlockSize)
	d.bitmapSize = bitmapBytes(h.BlockSize)
	tableOff := int64(h.TableOffset)
	if need := (d.size + d.blockSize - 1) / d.blockSize; int64(h.MaxTableEntries) < need {
		return nil, formatErrf("dynamic header", hdrOff+headerOffMaxEntries, "%d BAT entries for %d blocks of the virtual size", h.MaxTableEntries, need)
	}
	batLen := int64(h.MaxTableEntries) * 4
	if tableOff+batLen > footerOff {
		return nil, formatErr("BAT", tableOff, fmt.Errorf("%w: %d entries do not fit before the footer at %d", ErrTruncated, h.MaxTableEntries, footerOff))
	}
	raw := make([]byte, batLen)
	if _, err := f.ReadAt(raw, tableOff); err != nil {
		return nil, formatErr("BAT", tableOff, ioErr(err))
	}
	d.bat = make([]uint32, h.MaxTableEntries)
	blockSpan := d.bitmapSize + d.blockSize
	for i := range d.bat {
		e := binary.BigEndian.Uint32(raw[4*i:])
		d.bat[i] = e
		if e == BATUnallocated {
			continue
		}
		if off := int64(e) * SectorSize; off < tableOff+batLen || off+blockSpan > footerOff {
			return nil, formatErrf("BAT", tableOff+4*int64(i), "block %d at offset %d outside the data area [%d, %d)", i, off, tableOff+batLen, footerOff)
		}
	}
	d.nextBlock = (footerOff + SectorSize - 1) / SectorSize * SectorSize
	d.bitmap = make([]byte, d.bitmapSize)

	if footer.DiskType == DiskTypeDifferencing {
		if parent == nil {
			if depth >= maxChainDepth {
				return nil, fmt.Errorf("%w: more than %d parents", ErrUnsupported, maxChainDepth)
			}
			parent, err = d.openParent(fileSize, depth)
			if err != nil {
				return nil, err
			}
		}
		d.parent = parent
		d.parentPath = parent.path
	}
	return d, nil
}

// openParent finds and opens the parent of a differencing disk.
func (d *Disk) openParent(fileSize int64, depth int) (*Disk, error) {
	h := d.header
	dir := filepath.Dir(d.path)
	var candidates []string
	for _, code := range []uint32{PlatformWindowsRelative, PlatformWindowsAbsolute} {
		for i, l := range h.ParentLocators {
			if l.PlatformCode != code {
				continue
			}
			locOff := int64(d.footer.DataOffset) + headerOffLocators + parentLocatorSize*int64(i)
			if l.DataLength == 0 || l.DataLength > maxParentLocatorBytes || int64(l.DataOffset) > fileSize || int64(l.DataOffset)+int64(l.DataLength) > fileSize {
				return nil, formatErrf(fmt.Sprintf("parent locator %d", i), locOff, "data of %d bytes at %d outside the file", l.DataLength, l.DataOffset)
			}
			buf := make([]byte, l.DataLength)
			if _, err := d.f.ReadAt(buf, int64(l.DataOffset)); err != nil {
				return nil, formatErr(fmt.Sprintf("parent locator %d", i), int64(l.DataOffset), ioErr(err))
			}
			p := strings.ReplaceAll(decodeUTF16LE(buf), `\`, "/")
			if p == "" {
				continue
			}
			if code == PlatformWindowsRelative && !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			candidates = append(candidates, p)
		}
	}
	if h.ParentName != "" && !strings.ContainsAny(h.ParentName, `/\`) {
		candidates = append(candidates, filepath.Join(dir, h.ParentName))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		parent, err := openDepth(p, true, depth+1)
		if err != nil {
			return nil, fmt.Errorf("vhd: opening parent: %w", err)
		}
		if parent.footer.UniqueID != h.ParentUniqueID {
			parent.Close()
			return nil, fmt.Errorf("%w: %s has %X, the child records %X", ErrParentMismatch, p, parent.footer.UniqueID, h.ParentUniqueID)
		}
		return parent, nil
	}
	return nil, fmt.Errorf("%w: tried %q", ErrParentNotFound, candidates)
}

// Size returns the virtual size in bytes (the footer's Current Size).
func (d *Disk) Size() int64 { return d.size }

// Type returns the disk type.
func (d *Disk) Type() DiskType { return d.footer.DiskType }

// Footer returns a copy of the disk's footer.
func (d *Disk) Footer() Footer { return d.footer }

// Header returns a copy of the dynamic disk header, or nil for a fixed disk.
func (d *Disk) Header() *DynamicHeader {
	if d.header == nil {
		return nil
	}
	h := *d.header
	return &h
}

// Parent returns the open parent of a differencing disk, or nil.
func (d *Disk) Parent() *Disk { return d.parent }

// Path returns the path the disk was opened or created with.
func (d *Disk) Path() string { return d.path }

// ReadAt reads len(p) bytes of the virtual disk at off. It follows io.ReaderAt:
// fewer bytes come only with an error, io.EOF at the end of the disk. Unallocated
// blocks read as zeros, or from the parent of a differencing disk.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
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
		p = p[:d.size-off]
		eof = io.EOF
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return 0, os.ErrClosed
	}
	if d.header == nil {
		n, err := d.f.ReadAt(p, off)
		if err != nil {
			return n, formatErr("data", off+int64(n), ioErr(err))
		}
		return n, eof
	}
	done, err := forEachBlock(p, off, d.blockSize, d.readBlock)
	if err != nil {
		return done, err
	}
	return done, eof
}

// blockOffset returns the file offset of block blk's bitmap, or -1.
func (d *Disk) blockOffset(blk int64) int64 {
	e := d.bat[blk]
	if e == BATUnallocated {
		return -1
	}
	return int64(e) * SectorSize
}

func (d *Disk) readBlock(p []byte, blk, in int64) error {
	boff := d.blockOffset(blk)
	if boff < 0 {
		return d.readParent(p, blk*d.blockSize+in)
	}
	if err := d.loadBitmap(blk, boff); err != nil {
		return err
	}
	// Runs of sectors with the same bitmap bit come from the same place.
	for len(p) > 0 {
		s := in / SectorSize
		set := bitSet(d.bitmap, s)
		end := (s + 1) * SectorSize
		for end-in < int64(len(p)) && bitSet(d.bitmap, end/SectorSize) == set {
			end += SectorSize
		}
		n := min(end-in, int64(len(p)))
		if set {
			if _, err := d.f.ReadAt(p[:n], boff+d.bitmapSize+in); err != nil {
				return formatErr(fmt.Sprintf("block %d", blk), boff, ioErr(err))
			}
		} else if err := d.readParent(p[:n], blk*d.blockSize+in); err != nil {
			return err
		}
		p = p[n:]
		in += n
	}
	return nil
}

// readParent reads from the parent, or zeros without one or beyond its size.
func (d *Disk) readParent(p []byte, off int64) error {
	if d.parent == nil {
		clear(p)
		return nil
	}
	n, err := d.parent.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	clear(p[n:])
	return err
}

func (d *Disk) loadBitmap(blk, boff int64) error {
	if _, err := d.f.ReadAt(d.bitmap, boff); err != nil {
		return formatErr(fmt.Sprintf("block %d bitmap", blk), boff, ioErr(err))
	}
	return nil
}

func bitSet(bitmap []byte, sector int64) bool {
	return bitmap[sector/8]&(0x80>>(sector%8)) != 0
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
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return 0, fmt.Errorf("%w: %d bytes at %d, size %d", ErrOutOfRange, len(p), off, d.size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return 0, os.ErrClosed
	}
	if d.header == nil {
		return d.f.WriteAt(p, off)
	}
	return forEachBlock(p, off, d.blockSize, d.writeBlock)
}

func (d *Disk) writeBlock(p []byte, blk, in int64) error {
	boff := d.blockOffset(blk)
	if boff < 0 {
		if d.parent == nil && allZero(p) {
			return nil
		}
		var err error
		if boff, err = d.allocate(blk); err != nil {
			return err
		}
	}
	data := boff + d.bitmapSize
	if err := d.loadBitmap(blk, boff); err != nil {
		return err
	}
	s0 := in / SectorSize
	s1 := (in + int64(len(p)) + SectorSize - 1) / SectorSize
	buf := p
	if in%SectorSize != 0 || int64(len(p))%SectorSize != 0 {
		// Complete the first and last sectors from this file, or from the parent
		// (zeros on a dynamic disk) where their bit is 0.
		buf = make([]byte, (s1-s0)*SectorSize)
		for _, s := range []int64{s0, s1 - 1} {
			b := buf[(s-s0)*SectorSize : (s-s0+1)*SectorSize]
			var err error
			if bitSet(d.bitmap, s) {
				_, err = d.f.ReadAt(b, data+s*SectorSize)
			} else {
				err = d.readParent(b, blk*d.blockSize+s*SectorSize)
			}
			if err != nil {
				return err
			}
		}
		copy(buf[in-s0*SectorSize:], p)
	}
	if _, err := d.f.WriteAt(buf, data+s0*SectorSize); err != nil {
		return err
	}
	changed := false
	for s := s0; s < s1; s++ {
		if !bitSet(d.bitmap, s) {
			d.bitmap[s/8] |= 0x80 >> (s % 8)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	b0, b1 := s0/8, (s1-1)/8+1
	_, err := d.f.WriteAt(d.bitmap[b0:b1], boff+b0)
	return err
}

// allocate appends block blk at the trailing footer's place: bitmap (all ones on a
// dynamic disk, all zeros on a differencing one) and a hole for the data, then the
// footer after it, then the BAT entry.
func (d *Disk) allocate(blk int64) (int64, error) {
	off := d.nextBlock
	if off/SectorSize >= int64(BATUnallocated) {
		return 0, fmt.Errorf("vhd: block %d: file too large for a BAT entry", blk)
	}
	fill := byte(0xFF)
	if d.parent != nil {
		fill = 0
	}
	bm := make([]byte, d.bitmapSize)
	for i := range bm {
		bm[i] = fill
	}
	if _, err := d.f.WriteAt(bm, off); err != nil {
		return 0, err
	}
	end := off + d.bitmapSize + d.blockSize
	if err := AppendFixedFooter(d.f, end, &d.footer); err != nil {
		return 0, err
	}
	var e [4]byte
	binary.BigEndian.PutUint32(e[:], uint32(off/SectorSize))
	if _, err := d.f.WriteAt(e[:], int64(d.header.TableOffset)+4*blk); err != nil {
		return 0, err
	}
	d.bat[blk] = uint32(off / SectorSize)
	d.nextBlock = end
	return off, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Flush syncs the file to stable storage.
func (d *Disk) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return os.ErrClosed
	}
	if d.readOnly {
		return nil
	}
	return d.f.Sync()
}

// Close flushes a writable disk and closes it and its parents.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return os.ErrClosed
	}
	var errs []error
	if !d.readOnly {
		errs = append(errs, d.f.Sync())
	}
	errs = append(errs, d.f.Close())
	d.f = nil
	if d.parent != nil {
		errs = append(errs, d.parent.Close())
	}
	return errors.Join(errs...)
}

// ioErr turns the end of the file in the middle of a structure into ErrTruncated.
func ioErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}
