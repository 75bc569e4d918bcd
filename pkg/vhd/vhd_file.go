package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// vhdFile is the backend of a VHD of any type.
type vhdFile struct {
	d      *Disk
	f      *os.File
	footer Footer

	// Dynamic and differencing disks only.
	header     *DynamicHeader
	bat        []uint32
	blockSize  int64
	bitmapSize int64
	nextBlock  int64 // where the next block goes: the trailing footer's offset
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
		if parent.Format() != FormatVHD {
			return nil, fmt.Errorf("%w: a VHD differencing disk needs a VHD parent, %s is %s", ErrInvalidOptions, opts.Parent, parent.Format())
		}
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
	d, err = openVHDFile(f, path, false, 0, parent)
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
		h.ParentUniqueID = parent.vhd.footer.UniqueID
		h.ParentTimeStamp = parent.vhd.footer.TimeStamp
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

// openVHDFile reads and validates the structures of an open VHD file. parent, if
// not nil, is used instead of resolving the parent locators.
func openVHDFile(f *os.File, path string, readOnly bool, depth int, parent *Disk) (*Disk, error) {
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
	v := &vhdFile{f: f, footer: *footer}
	d := &Disk{path: path, format: FormatVHD, typ: footer.DiskType, readOnly: readOnly,
		size: int64(footer.CurrentSize), sector: SectorSize, b: v, vhd: v}
	v.d = d
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
	v.header = h
	v.blockSize = int64(h.BlockSize)
	v.bitmapSize = bitmapBytes(h.BlockSize)
	tableOff := int64(h.TableOffset)
	if need := (d.size + v.blockSize - 1) / v.blockSize; int64(h.MaxTableEntries) < need {
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
	v.bat = make([]uint32, h.MaxTableEntries)
	blockSpan := v.bitmapSize + v.blockSize
	for i := range v.bat {
		e := binary.BigEndian.Uint32(raw[4*i:])
		v.bat[i] = e
		if e == BATUnallocated {
			continue
		}
		if off := int64(e) * SectorSize; off < tableOff+batLen || off+blockSpan > footerOff {
			return nil, formatErrf("BAT", tableOff+4*int64(i), "block %d at offset %d outside the data area [%d, %d)", i, off, tableOff+batLen, footerOff)
		}
	}
	v.nextBlock = (footerOff + SectorSize - 1) / SectorSize * SectorSize
	v.bitmap = make([]byte, v.bitmapSize)

	if footer.DiskType == DiskTypeDifferencing {
		if parent == nil {
			parent, err = v.openParent(fileSize, depth)
			if err != nil {
				return nil, err
			}
		}
		d.parent = parent
	}
	return d, nil
}

// openParent finds and opens the parent of a differencing disk.
func (v *vhdFile) openParent(fileSize int64, depth int) (*Disk, error) {
	h := v.header
	dir := filepath.Dir(v.d.path)
	var candidates []string
	for _, code := range []uint32{PlatformWindowsRelative, PlatformWindowsAbsolute} {
		for i, l := range h.ParentLocators {
			if l.PlatformCode != code {
				continue
			}
			locOff := int64(v.footer.DataOffset) + headerOffLocators + parentLocatorSize*int64(i)
			if l.DataLength == 0 || l.DataLength > maxParentLocatorBytes || int64(l.DataOffset) > fileSize || int64(l.DataOffset)+int64(l.DataLength) > fileSize {
				return nil, formatErrf(fmt.Sprintf("parent locator %d", i), locOff, "data of %d bytes at %d outside the file", l.DataLength, l.DataOffset)
			}
			buf := make([]byte, l.DataLength)
			if _, err := v.f.ReadAt(buf, int64(l.DataOffset)); err != nil {
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
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		parent, err := openDepth(p, true, depth+1)
		if err != nil {
			return nil, fmt.Errorf("vhd: opening parent: %w", err)
		}
		if parent.vhd == nil || parent.vhd.footer.UniqueID != h.ParentUniqueID {
			parent.Close()
			return nil, fmt.Errorf("%w: %s has %X, the child records %X", ErrParentMismatch, p, parent.Footer().UniqueID, h.ParentUniqueID)
		}
		return parent, nil
	}
	return nil, fmt.Errorf("%w: tried %q", ErrParentNotFound, candidates)
}

func (v *vhdFile) read(p []byte, off int64) error {
	if v.header == nil {
		if _, err := v.f.ReadAt(p, off); err != nil {
			return formatErr("data", off, ioErr(err))
		}
		return nil
	}
	_, err := forEachBlock(p, off, v.blockSize, v.readBlock)
	return err
}

// blockOffset returns the file offset of block blk's bitmap, or -1.
func (v *vhdFile) blockOffset(blk int64) int64 {
	e := v.bat[blk]
	if e == BATUnallocated {
		return -1
	}
	return int64(e) * SectorSize
}

func (v *vhdFile) readBlock(p []byte, blk, in int64) error {
	boff := v.blockOffset(blk)
	if boff < 0 {
		return readParent(v.d.parent, p, blk*v.blockSize+in)
	}
	if err := v.loadBitmap(blk, boff); err != nil {
		return err
	}
	// Runs of sectors with the same bitmap bit come from the same place.
	for len(p) > 0 {
		s := in / SectorSize
		set := bitSet(v.bitmap, s)
		end := (s + 1) * SectorSize
		for end-in < int64(len(p)) && bitSet(v.bitmap, end/SectorSize) == set {
			end += SectorSize
		}
		n := min(end-in, int64(len(p)))
		if set {
			if _, err := v.f.ReadAt(p[:n], boff+v.bitmapSize+in); err != nil {
				return formatErr(fmt.Sprintf("block %d", blk), boff, ioErr(err))
			}
		} else if err := readParent(v.d.parent, p[:n], blk*v.blockSize+in); err != nil {
			return err
		}
		p = p[n:]
		in += n
	}
	return nil
}

func (v *vhdFile) loadBitmap(blk, boff int64) error {
	if _, err := v.f.ReadAt(v.bitmap, boff); err != nil {
		return formatErr(fmt.Sprintf("block %d bitmap", blk), boff, ioErr(err))
	}
	return nil
}

func bitSet(bitmap []byte, sector int64) bool {
	return bitmap[sector/8]&(0x80>>(sector%8)) != 0
}

func (v *vhdFile) write(p []byte, off int64) error {
	if v.header == nil {
		_, err := v.f.WriteAt(p, off)
		return err
	}
	_, err := forEachBlock(p, off, v.blockSize, v.writeBlock)
	return err
}

func (v *vhdFile) writeBlock(p []byte, blk, in int64) error {
	parent := v.d.parent
	boff := v.blockOffset(blk)
	if boff < 0 {
		if parent == nil && allZero(p) {
			return nil
		}
		var err error
		if boff, err = v.allocate(blk); err != nil {
			return err
		}
	}
	data := boff + v.bitmapSize
	if err := v.loadBitmap(blk, boff); err != nil {
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
			if bitSet(v.bitmap, s) {
				_, err = v.f.ReadAt(b, data+s*SectorSize)
			} else {
				err = readParent(parent, b, blk*v.blockSize+s*SectorSize)
			}
			if err != nil {
				return err
			}
		}
		copy(buf[in-s0*SectorSize:], p)
	}
	if _, err := v.f.WriteAt(buf, data+s0*SectorSize); err != nil {
		return err
	}
	changed := false
	for s := s0; s < s1; s++ {
		if !bitSet(v.bitmap, s) {
			v.bitmap[s/8] |= 0x80 >> (s % 8)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	b0, b1 := s0/8, (s1-1)/8+1
	_, err := v.f.WriteAt(v.bitmap[b0:b1], boff+b0)
	return err
}

// allocate appends block blk at the trailing footer's place: bitmap (all ones on a
// dynamic disk, all zeros on a differencing one) and a hole for the data, then the
// footer after it, then the BAT entry.
func (v *vhdFile) allocate(blk int64) (int64, error) {
	off := v.nextBlock
	if off/SectorSize >= int64(BATUnallocated) {
		return 0, fmt.Errorf("vhd: block %d: file too large for a BAT entry", blk)
	}
	fill := byte(0xFF)
	if v.d.parent != nil {
		fill = 0
	}
	bm := make([]byte, v.bitmapSize)
	for i := range bm {
		bm[i] = fill
	}
	if _, err := v.f.WriteAt(bm, off); err != nil {
		return 0, err
	}
	end := off + v.bitmapSize + v.blockSize
	if err := AppendFixedFooter(v.f, end, &v.footer); err != nil {
		return 0, err
	}
	var e [4]byte
	binary.BigEndian.PutUint32(e[:], uint32(off/SectorSize))
	if _, err := v.f.WriteAt(e[:], int64(v.header.TableOffset)+4*blk); err != nil {
		return 0, err
	}
	v.bat[blk] = uint32(off / SectorSize)
	v.nextBlock = end
	return off, nil
}

func (v *vhdFile) sync() error  { return v.f.Sync() }
func (v *vhdFile) close() error { return v.f.Close() }
