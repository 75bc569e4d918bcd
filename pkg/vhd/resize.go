package vhd

// Resizing disks in place.

import (
	"encoding/binary"
	"fmt"
	"io"
)

// checkZero returns ErrShrinkUnsafe unless the virtual range [from, to) of d reads
// as zeros. It skips nothing: it is only used for the part a shrink drops.
func checkZero(b backend, from, to int64) error {
	buf := make([]byte, 1<<20)
	for off := from; off < to; off += int64(len(buf)) {
		p := buf[:min(int64(len(buf)), to-off)]
		if err := b.read(p, off); err != nil {
			return err
		}
		if !allZero(p) {
			return fmt.Errorf("%w: data between %d and %d is not all zeros", ErrShrinkUnsafe, from, to)
		}
	}
	return nil
}

// resize of a VHD. Both Current Size and Original Size get the new size, since
// readers differ in which they report (libvhdi uses Original Size). A fixed disk gets its footer at the new end. A dynamic disk
// keeps its blocks; when its BAT must grow past the space before the first data
// block, the blocks in the way are first copied to the end of the file.
//
// Crash windows: growing a fixed disk writes the new footer at the new end first,
// then zeroes the old footer, which until then shows as 512 bytes of the new
// space. Growing a dynamic disk's BAT moves each block (copy, sync, BAT entry,
// sync) before the new BAT entries overwrite it, then writes the header and the
// footers; a crash in between leaves the old size with unused space.
func (v *vhdFile) resize(size int64) error {
	old := v.d.size
	if v.header == nil {
		if size < old {
			if err := checkZero(v, size, old); err != nil {
				return err
			}
		}
		ft := v.footer
		ft.OriginalSize, ft.CurrentSize, ft.Geometry = uint64(size), uint64(size), GeometryForSize(size)
		if err := AppendFixedFooter(v.f, size, &ft); err != nil {
			return err
		}
		if err := v.f.Sync(); err != nil {
			return err
		}
		if size > old {
			// The old footer is now inside the disk: make it read as zeros.
			if _, err := v.f.WriteAt(make([]byte, FooterSize), old); err != nil {
				return err
			}
		} else if err := v.f.Truncate(size + FooterSize); err != nil {
			return err
		}
		v.footer = ft
		return v.f.Sync()
	}

	if size > MaxDynamicSize {
		return fmt.Errorf("%w: size %d above the %d bytes of a dynamic disk", ErrInvalidOptions, size, int64(MaxDynamicSize))
	}
	need := (size + v.blockSize - 1) / v.blockSize
	if size < old {
		for blk := need; blk < int64(len(v.bat)); blk++ {
			if v.bat[blk] != BATUnallocated {
				return fmt.Errorf("%w: block %d past the new end is allocated", ErrShrinkUnsafe, blk)
			}
		}
		if err := checkZero(v, size, min(old, need*v.blockSize)); err != nil {
			return err
		}
	}
	if need > int64(len(v.bat)) {
		if err := v.growBAT(need); err != nil {
			return err
		}
	}
	ft := v.footer
	ft.OriginalSize, ft.CurrentSize, ft.Geometry = uint64(size), uint64(size), GeometryForSize(size)
	fb, _ := ft.MarshalBinary()
	for _, off := range []int64{v.nextBlock, 0} {
		if _, err := v.f.WriteAt(fb, off); err != nil {
			return err
		}
	}
	v.footer = ft
	return v.f.Sync()
}

// growBAT makes room for n BAT entries after TableOffset.
func (v *vhdFile) growBAT(n int64) error {
	if n > int64(BATUnallocated) {
		return fmt.Errorf("%w: %d blocks", ErrInvalidOptions, n)
	}
	tableOff := int64(v.header.TableOffset)
	end := tableOff + batBytes(uint32(n))
	// Move the blocks that lie in the way to the end of the file.
	for blk, e := range v.bat {
		if e == BATUnallocated || int64(e)*SectorSize >= end {
			continue
		}
		src := int64(e) * SectorSize
		buf := make([]byte, v.bitmapSize+v.blockSize)
		if _, err := v.f.ReadAt(buf, src); err != nil {
			return formatErr(fmt.Sprintf("block %d", blk), src, ioErr(err))
		}
		dst := v.nextBlock
		if dst/SectorSize >= int64(BATUnallocated) {
			return fmt.Errorf("vhd: block %d: file too large for a BAT entry", blk)
		}
		if _, err := v.f.WriteAt(buf, dst); err != nil {
			return err
		}
		if err := AppendFixedFooter(v.f, dst+int64(len(buf)), &v.footer); err != nil {
			return err
		}
		if err := v.f.Sync(); err != nil {
			return err
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(dst/SectorSize))
		if _, err := v.f.WriteAt(b[:], tableOff+4*int64(blk)); err != nil {
			return err
		}
		if err := v.f.Sync(); err != nil {
			return err
		}
		v.bat[blk] = uint32(dst / SectorSize)
		v.nextBlock = dst + int64(len(buf))
	}
	// Parent locator data of a differencing disk could lie there too, but those
	// are not resized.
	if end > v.nextBlock {
		// The BAT reaches past the trailing footer: move the footer after it.
		if err := AppendFixedFooter(v.f, end, &v.footer); err != nil {
			return err
		}
		v.nextBlock = end
	}
	fresh := make([]byte, batBytes(uint32(n))-4*int64(len(v.bat)))
	for i := range fresh {
		fresh[i] = 0xFF
	}
	if _, err := v.f.WriteAt(fresh, tableOff+4*int64(len(v.bat))); err != nil {
		return err
	}
	if err := v.f.Sync(); err != nil {
		return err
	}
	h := *v.header
	h.MaxTableEntries = uint32(n)
	hb, err := h.MarshalBinary()
	if err != nil {
		return err
	}
	if _, err := v.f.WriteAt(hb, int64(v.footer.DataOffset)); err != nil {
		return err
	}
	v.header = &h
	for range int(n) - len(v.bat) {
		v.bat = append(v.bat, BATUnallocated)
	}
	return nil
}

// resize of a VHDX. New BAT entries (and, for a fixed disk, new blocks at the end
// of the file) are written where no reader looks yet; when the BAT region is too
// small, a larger copy of the BAT is written at the end of the file. Then the
// virtual size item and, if the BAT moved, both region tables are updated
// together through the log, so that a crash leaves either the old disk or a log
// that the next writable open replays.
func (x *vhdxFile) resize(size int64) error {
	if size > vhdxMaxVirtualSize {
		return fmt.Errorf("%w: size %d above 64 TiB", ErrInvalidOptions, size)
	}
	if len(x.pendingBAT) > 0 || len(x.pendingBM) > 0 {
		// The BAT is rewritten or extended below: first the entries kept in
		// memory, in their order (BatchAllocations).
		if err := x.commit(); err != nil {
			return err
		}
	}
	old := x.d.size
	fixed := x.d.typ == Fixed
	if size < old {
		oldPB := (old + x.bs - 1) / x.bs
		newPB := (size + x.bs - 1) / x.bs
		if !fixed {
			for k := newPB; k < oldPB; k++ {
				if s := x.bat[x.payloadEntry(k)] & 7; s == VHDXBlockFullyPresent || s == VHDXBlockPartiallyPresent {
					return fmt.Errorf("%w: block %d past the new end is allocated", ErrShrinkUnsafe, k)
				}
			}
		}
		end := min(old, newPB*x.bs)
		if fixed {
			end = old
		}
		if err := checkZero(x, size, end); err != nil {
			return err
		}
	}
	if !x.started {
		if err := x.startSession(); err != nil {
			return err
		}
	}
	entries := vhdxBATEntries(size, x.bs, x.chunk, x.info.HasParent)
	bat := make([]uint64, entries)
	copy(bat, x.bat)
	oldEntries := int64(len(x.bat))
	if fixed && entries > oldEntries {
		// Allocate the new blocks contiguously at the end of the file.
		oldPB := (old + x.bs - 1) / x.bs
		newPB := (size + x.bs - 1) / x.bs
		start := x.nextBlock
		if err := x.w.Truncate(start + (newPB-oldPB)*x.bs); err != nil {
			return err
		}
		if err := allocate(x.w, start, (newPB-oldPB)*x.bs); err != nil {
			return fmt.Errorf("vhd: allocating blocks: %w", err)
		}
		for k := oldPB; k < newPB; k++ {
			bat[x.payloadEntry(k)] = uint64(start+(k-oldPB)*x.bs) | VHDXBlockFullyPresent
		}
		x.nextBlock = start + (newPB-oldPB)*x.bs
	}
	region, _ := x.info.Regions.Region(VHDXRegionBAT)
	batOff := x.batOff
	var writes []vhdxLogWrite
	if entries*8 > int64(region.Length) {
		// A new, larger BAT at the end of the file.
		batLen := (entries*8 + vhdxMiB - 1) / vhdxMiB * vhdxMiB
		if batLen > 1<<32-vhdxMiB {
			return fmt.Errorf("%w: a BAT of %d bytes", ErrInvalidOptions, batLen)
		}
		batOff = x.nextBlock
		if err := x.w.Truncate(batOff + batLen); err != nil {
			return err
		}
		if _, err := x.w.WriteAt(encodeBAT(bat), batOff); err != nil {
			return err
		}
		x.nextBlock = batOff + batLen
		rt := x.info.Regions
		rt.Entries = append([]VHDXRegion(nil), rt.Entries...)
		for i := range rt.Entries {
			if rt.Entries[i].GUID == VHDXRegionBAT {
				rt.Entries[i].FileOffset, rt.Entries[i].Length = uint64(batOff), uint32(batLen)
			}
		}
		rtb, err := rt.MarshalBinary()
		if err != nil {
			return err
		}
		writes = append(writes, vhdxLogWrite{vhdxRegionTable1Offset, rtb}, vhdxLogWrite{vhdxRegionTable2Offset, rtb})
	} else if entries > oldEntries {
		// The entries past the old end are not read until the size changes.
		if _, err := x.w.WriteAt(encodeBAT(bat[oldEntries:]), x.batOff+8*oldEntries); err != nil {
			return err
		}
	}
	if err := x.w.Sync(); err != nil {
		return err
	}
	// The sectors holding the virtual size item, changed.
	itemOff := x.info.VirtualDiskSizeOffset
	lo := itemOff / vhdxLogSector * vhdxLogSector
	hi := (itemOff + 8 + vhdxLogSector - 1) / vhdxLogSector * vhdxLogSector
	sec := make([]byte, hi-lo)
	if _, err := x.w.ReadAt(sec, lo); err != nil && err != io.EOF {
		return err
	}
	binary.LittleEndian.PutUint64(sec[itemOff-lo:], uint64(size))
	writes = append(writes, vhdxLogWrite{lo, sec})
	if err := logged(x.w, &x.info, writes, false); err != nil {
		return err
	}
	if err := readVHDXRegions(x.w, &x.info); err != nil {
		return err
	}
	x.bat, x.batOff = bat, batOff
	return nil
}

func encodeBAT(bat []uint64) []byte {
	b := make([]byte, 8*len(bat))
	for i, e := range bat {
		binary.LittleEndian.PutUint64(b[8*i:], e)
	}
	return b
}
