package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"

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
	VHDXBitmapNotPresent      = 0
	VHDXBitmapPresent         = 6
	vhdxBATReservedMask       = 0xFFFF8 // bits 3–19
	vhdxSectorsPerBitmapBlock = 1 << 23
	vhdxBitmapBlockSize       = 1 << 20
)

// vhdxFile is the backend of a VHDX of any type.
type vhdxFile struct {
	d      *Disk
	r      io.ReaderAt
	w      *os.File // nil when read-only
	c      io.Closer
	info   VHDXInfo
	bat    []uint64
	batOff int64
	chunk  int64 // chunk ratio: payload blocks per sector bitmap block
	bs     int64
	lss    int64

	started   bool  // headers updated for this session
	nextBlock int64 // where the next block goes (1 MiB aligned)
	// bitmaps caches the sector bitmap blocks of a differencing disk by chunk.
	bitmaps map[int64][]byte
	// deferSync: no sync before BAT entries (Disk.DeferSync).
	deferSync bool
	// batch (Disk.BatchAllocations): the BAT entries and sector bitmap bits
	// of allocations since the last sync are kept here, already in bat and
	// bitmaps, and written by commit after the data they expose is synced.
	batch      bool
	pendingBAT map[int64]struct{} // BAT indices changed in memory only
	pendingBM  map[int64][2]int64 // chunk → dirty byte range [lo, hi) of its bitmap
}

// openVHDXFile opens the VHDX in f. parent, if not nil, is used instead of
// resolving the parent locator.
func openVHDXFile(f *os.File, path string, readOnly bool, depth int, parent *Disk) (*Disk, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var w *os.File
	if !readOnly {
		w = f
	}
	d, err := newVHDX(f, w, fi.Size(), path, depth, parent)
	if err != nil {
		return nil, err
	}
	d.vhdx.c = f
	return d, nil
}

// newVHDX reads a VHDX of fileSize bytes from r; w, if not nil, is the same file
// open for writing. A pending log is replayed through w, or refused without it.
func newVHDX(r io.ReaderAt, w *os.File, fileSize int64, path string, depth int, parent *Disk) (*Disk, error) {
	info, err := readVHDXHeaders(r)
	if err != nil {
		return nil, err
	}
	if info.Header.LogGUID != (guid.GUID{}) {
		if fileSize, err = replayLog(r, w, fileSize, info); err != nil {
			return nil, err
		}
	}
	if err := readVHDXRegions(r, info); err != nil {
		return nil, err
	}
	x := &vhdxFile{r: r, w: w, info: *info, bs: int64(info.BlockSize), lss: int64(info.LogicalSectorSize)}
	d := &Disk{path: path, format: FormatVHDX, typ: Dynamic, readOnly: w == nil,
		size: int64(info.VirtualDiskSize), sector: x.lss, b: x, vhdx: x}
	x.d = d
	switch {
	case info.HasParent:
		d.typ = Differencing
	case info.LeaveBlockAllocated:
		d.typ = Fixed
	}
	x.chunk = int64(vhdxSectorsPerBitmapBlock) * x.lss / x.bs
	entries := vhdxBATEntries(d.size, x.bs, x.chunk, info.HasParent)
	region, _ := info.Regions.Region(VHDXRegionBAT)
	x.batOff = int64(region.FileOffset)
	if entries*8 > int64(region.Length) || x.batOff+entries*8 > fileSize {
		return nil, formatErr("VHDX BAT", x.batOff, fmt.Errorf("%w: %d entries, region of %d bytes, file of %d bytes", ErrTruncated, entries, region.Length, fileSize))
	}
	raw := make([]byte, entries*8)
	if _, err := r.ReadAt(raw, x.batOff); err != nil {
		return nil, formatErr("VHDX BAT", x.batOff, ioErr(err))
	}
	x.bat = make([]uint64, entries)
	for i := range x.bat {
		x.bat[i] = binary.LittleEndian.Uint64(raw[8*i:])
	}
	if err := x.checkBAT(fileSize); err != nil {
		return nil, err
	}
	if info.HasParent {
		x.bitmaps = map[int64][]byte{}
		if parent == nil {
			if parent, err = x.openParent(depth); err != nil {
				return nil, err
			}
		}
		d.parent = parent
	}
	return d, nil
}

// vhdxBATEntries is the number of BAT entries of a disk: payload entries with a
// sector bitmap entry after every chunk of them, the last one included for a
// differencing disk.
func vhdxBATEntries(size, bs, chunk int64, differencing bool) int64 {
	pb := (size + bs - 1) / bs
	if differencing {
		return (pb + chunk - 1) / chunk * (chunk + 1)
	}
	return pb + (pb-1)/chunk
}

// checkBAT validates the BAT entries: reserved bits, the states allowed for the
// disk type, offsets inside the file, and no block overlapping another block, a
// region, the log or the header section. It also sets nextBlock.
func (x *vhdxFile) checkBAT(fileSize int64) error {
	type span struct {
		off, end int64
		entry    int64 // BAT index, or -1 for a structure
		what     string
	}
	spans := []span{{0, vhdxMiB, -1, "the header section"}}
	h := x.info.Header
	if h.LogLength > 0 {
		spans = append(spans, span{int64(h.LogOffset), int64(h.LogOffset) + int64(h.LogLength), -1, "the log"})
	}
	for _, r := range x.info.Regions.Entries {
		spans = append(spans, span{int64(r.FileOffset), int64(r.FileOffset) + int64(r.Length), -1, "region " + r.GUID.String()})
	}
	hasParent := x.info.HasParent
	for i, e := range x.bat {
		off := x.batOff + 8*int64(i)
		if e&vhdxBATReservedMask != 0 {
			return formatErrf("VHDX BAT", off, "entry %d: reserved bits set (0x%X)", i, e)
		}
		state, fileOff := e&7, int64(e>>20)<<20
		length := x.bs
		if (int64(i)+1)%(x.chunk+1) == 0 {
			length = vhdxBitmapBlockSize
			switch {
			case state == VHDXBitmapNotPresent:
				continue
			case state == VHDXBitmapPresent && hasParent:
			default:
				return formatErrf("VHDX BAT", off, "entry %d: sector bitmap state %d invalid here", i, state)
			}
		} else {
			switch state {
			case VHDXBlockFullyPresent:
			case VHDXBlockPartiallyPresent:
				if !hasParent {
					return formatErrf("VHDX BAT", off, "entry %d: partially present block in a disk without parent", i)
				}
				j := int64(i) / (x.chunk + 1)
				if x.bat[j*(x.chunk+1)+x.chunk]&7 != VHDXBitmapPresent {
					return formatErrf("VHDX BAT", off, "entry %d: partially present block without a sector bitmap", i)
				}
			case VHDXBlockNotPresent, VHDXBlockUndefined, VHDXBlockZero, VHDXBlockUnmapped, vhdxBlockUnmappedDraft:
				continue
			default:
				return formatErrf("VHDX BAT", off, "entry %d: invalid state %d", i, state)
			}
		}
		if fileOff < vhdxMiB || fileOff+length > fileSize {
			return formatErrf("VHDX BAT", off, "entry %d: block of %d bytes at %d outside the file of %d bytes", i, length, fileOff, fileSize)
		}
		spans = append(spans, span{fileOff, fileOff + length, int64(i), ""})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	next := fileSize
	for i, s := range spans {
		next = max(next, s.end)
		if i == 0 || spans[i-1].end <= s.off {
			continue
		}
		a, b := spans[i-1], s
		if b.entry < 0 {
			a, b = b, a
		}
		if b.entry < 0 {
			return formatErrf("VHDX region table", vhdxRegionTable1Offset, "%s and %s overlap", a.what, b.what)
		}
		other := a.what
		if a.entry >= 0 {
			other = fmt.Sprintf("the block of entry %d", a.entry)
		}
		return formatErrf("VHDX BAT", x.batOff+8*b.entry, "entry %d: block at %d overlaps %s", b.entry, b.off, other)
	}
	x.nextBlock = (next + vhdxMiB - 1) / vhdxMiB * vhdxMiB
	return nil
}

// payloadEntry returns the BAT index of payload block k.
func (x *vhdxFile) payloadEntry(k int64) int64 { return k + k/x.chunk }

// bitmapEntry returns the BAT index of the sector bitmap block of chunk j.
func (x *vhdxFile) bitmapEntry(j int64) int64 { return j*(x.chunk+1) + x.chunk }

func (x *vhdxFile) read(p []byte, off int64) error {
	_, err := forEachBlock(p, off, x.bs, x.readBlock)
	return err
}

func (x *vhdxFile) readBlock(p []byte, k, in int64) error {
	e := x.bat[x.payloadEntry(k)]
	blockOff := int64(e>>20) << 20
	switch e & 7 {
	case VHDXBlockFullyPresent:
		return x.readFile(p, blockOff+in, k)
	case VHDXBlockPartiallyPresent:
		bm, err := x.bitmap(k / x.chunk)
		if err != nil {
			return err
		}
		// Runs of sectors with the same bit come from the same place.
		first := k * x.bs / x.lss // first sector of the block
		for len(p) > 0 {
			s := in / x.lss
			set := vhdxBit(bm, first+s)
			end := (s + 1) * x.lss
			for end-in < int64(len(p)) && vhdxBit(bm, first+end/x.lss) == set {
				end += x.lss
			}
			n := min(end-in, int64(len(p)))
			if set {
				err = x.readFile(p[:n], blockOff+in, k)
			} else {
				err = readParent(x.d.parent, p[:n], k*x.bs+in)
			}
			if err != nil {
				return err
			}
			p, in = p[n:], in+n
		}
		return nil
	case VHDXBlockNotPresent:
		return readParent(x.d.parent, p, k*x.bs+in)
	}
	clear(p)
	return nil
}

func (x *vhdxFile) readFile(p []byte, off, k int64) error {
	if _, err := x.r.ReadAt(p, off); err != nil {
		return formatErr(fmt.Sprintf("VHDX block %d", k), off, ioErr(err))
	}
	return nil
}

// vhdxBit reports whether sector s (of the whole disk) is set in its chunk's
// bitmap. Bits are least significant first.
func vhdxBit(bm []byte, s int64) bool {
	i := s % vhdxSectorsPerBitmapBlock
	return bm[i/8]&(1<<(i%8)) != 0
}

// bitmap returns the sector bitmap of chunk j, all zeros when not present.
func (x *vhdxFile) bitmap(j int64) ([]byte, error) {
	if bm, ok := x.bitmaps[j]; ok {
		return bm, nil
	}
	bm := make([]byte, vhdxBitmapBlockSize)
	if e := x.bat[x.bitmapEntry(j)]; e&7 == VHDXBitmapPresent {
		off := int64(e>>20) << 20
		if _, err := x.r.ReadAt(bm, off); err != nil {
			return nil, formatErr(fmt.Sprintf("VHDX sector bitmap %d", j), off, ioErr(err))
		}
	}
	x.bitmaps[j] = bm
	return bm, nil
}

func (x *vhdxFile) write(p []byte, off int64) error {
	if !x.started {
		if err := x.startSession(); err != nil {
			return err
		}
	}
	_, err := forEachBlock(p, off, x.bs, x.writeBlock)
	return err
}

func (x *vhdxFile) writeBlock(p []byte, k, in int64) error {
	idx := x.payloadEntry(k)
	e := x.bat[idx]
	state := e & 7
	switch state {
	case VHDXBlockFullyPresent:
		_, err := x.w.WriteAt(p, int64(e>>20)<<20+in)
		return err
	case VHDXBlockPartiallyPresent:
		return x.writeSectors(p, k, in, int64(e>>20)<<20)
	}
	parent := x.d.parent
	if state == VHDXBlockNotPresent && parent != nil && int64(len(p)) != x.bs {
		// Copy on write at sector granularity: the rest of the block stays in the
		// parent, which the sector bitmap records.
		j := k / x.chunk
		if err := x.ensureBitmap(j); err != nil {
			return err
		}
		off, err := x.allocate(x.bs)
		if err != nil {
			return err
		}
		if err := x.writeSectors(p, k, in, off); err != nil {
			return err
		}
		return x.setEntry(idx, uint64(off)|VHDXBlockPartiallyPresent, true)
	}
	// The block reads as zeros (or is wholly overwritten): a new block that is
	// zero where p does not cover it.
	if allZero(p) && (parent == nil || state != VHDXBlockNotPresent) {
		return nil
	}
	off, err := x.allocate(x.bs)
	if err != nil {
		return err
	}
	if _, err := x.w.WriteAt(p, off+in); err != nil {
		return err
	}
	return x.setEntry(idx, uint64(off)|VHDXBlockFullyPresent, true)
}

// writeSectors writes p at in within block k of a differencing disk, stored at
// blockOff, completing partial first and last sectors from this file or the
// parent, and sets the sectors' bits.
func (x *vhdxFile) writeSectors(p []byte, k, in, blockOff int64) error {
	bm, err := x.bitmap(k / x.chunk)
	if err != nil {
		return err
	}
	first := k * x.bs / x.lss
	s0 := in / x.lss
	s1 := (in + int64(len(p)) + x.lss - 1) / x.lss
	buf := p
	if in%x.lss != 0 || int64(len(p))%x.lss != 0 {
		buf = make([]byte, (s1-s0)*x.lss)
		for _, s := range []int64{s0, s1 - 1} {
			b := buf[(s-s0)*x.lss : (s-s0+1)*x.lss]
			if vhdxBit(bm, first+s) {
				err = x.readFile(b, blockOff+s*x.lss, k)
			} else {
				err = readParent(x.d.parent, b, k*x.bs+s*x.lss)
			}
			if err != nil {
				return err
			}
		}
		copy(buf[in-s0*x.lss:], p)
	}
	if _, err := x.w.WriteAt(buf, blockOff+s0*x.lss); err != nil {
		return err
	}
	lo, hi := int64(-1), int64(-1)
	for s := s0; s < s1; s++ {
		i := (first + s) % vhdxSectorsPerBitmapBlock
		if bm[i/8]&(1<<(i%8)) == 0 {
			bm[i/8] |= 1 << (i % 8)
			if lo < 0 {
				lo = i / 8
			}
			hi = i/8 + 1
		}
	}
	if lo < 0 {
		return nil
	}
	if x.batch {
		j := k / x.chunk
		r, ok := x.pendingBM[j]
		if ok {
			lo, hi = min(lo, r[0]), max(hi, r[1])
		}
		x.pendingBM[j] = [2]int64{lo, hi}
		return nil
	}
	// The data is written before the bits that expose it.
	if !x.deferSync {
		if err := x.w.Sync(); err != nil {
			return err
		}
	}
	sb := int64(x.bat[x.bitmapEntry(k/x.chunk)]>>20) << 20
	_, err = x.w.WriteAt(bm[lo:hi], sb+lo)
	return err
}

// ensureBitmap gives chunk j a sector bitmap block (all zeros) if it has none.
func (x *vhdxFile) ensureBitmap(j int64) error {
	idx := x.bitmapEntry(j)
	if x.bat[idx]&7 == VHDXBitmapPresent {
		return nil
	}
	off, err := x.allocate(vhdxBitmapBlockSize)
	if err != nil {
		return err
	}
	if err := x.setEntry(idx, uint64(off)|VHDXBitmapPresent, true); err != nil {
		return err
	}
	x.bitmaps[j] = make([]byte, vhdxBitmapBlockSize)
	return nil
}

// allocate extends the file by n bytes (a hole, reading as zeros) at nextBlock.
func (x *vhdxFile) allocate(n int64) (int64, error) {
	off := x.nextBlock
	if err := x.w.Truncate(off + n); err != nil {
		return 0, err
	}
	x.nextBlock = off + n
	return off, nil
}

// setEntry writes BAT entry idx. With syncFirst, what the entry will point at is
// made durable before the entry itself.
func (x *vhdxFile) setEntry(idx int64, e uint64, syncFirst bool) error {
	if syncFirst && x.batch {
		x.bat[idx] = e
		x.pendingBAT[idx] = struct{}{}
		return nil
	}
	if syncFirst && !x.deferSync {
		if err := x.w.Sync(); err != nil {
			return err
		}
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], e)
	if _, err := x.w.WriteAt(b[:], x.batOff+8*idx); err != nil {
		return err
	}
	x.bat[idx] = e
	return nil
}

// startSession writes new headers before the first change of this open: new
// FileWriteGuid and DataWriteGuid.
func (x *vhdxFile) startSession() error {
	h := x.info.Header
	var a, b [16]byte
	if _, err := rand.Read(a[:]); err != nil {
		return err
	}
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	h.FileWriteGUID, h.DataWriteGUID = guid.FromArray(a), guid.FromArray(b)
	if err := writeVHDXHeaders(x.w, &x.info, h); err != nil {
		return err
	}
	x.started = true
	return nil
}

// writeVHDXHeaders installs header h: into the non-current slot with the next
// sequence number, then into the other slot with the one after, syncing after
// each, so that both slots end valid and current (as qemu does).
func writeVHDXHeaders(w *os.File, info *VHDXInfo, h VHDXHeader) error {
	slots := []int64{vhdxHeader1Offset, vhdxHeader2Offset}
	idx := 1 - info.HeaderIndex
	h.SequenceNumber = info.Header.SequenceNumber
	for range 2 {
		h.SequenceNumber++
		hb, _ := h.MarshalBinary()
		if _, err := w.WriteAt(hb, slots[idx]); err != nil {
			return err
		}
		if err := w.Sync(); err != nil {
			return err
		}
		info.HeaderIndex = idx
		info.Header = h
		idx = 1 - idx
	}
	return nil
}

func (x *vhdxFile) sync() error {
	if len(x.pendingBAT) == 0 && len(x.pendingBM) == 0 {
		return x.w.Sync()
	}
	return x.commit()
}

// commit writes what batch mode kept in memory: it syncs the file (the data
// of the new blocks and the file's new size), then writes the sector bitmap
// bits and BAT entries that refer to that data, and syncs again. A crash before
// the first sync completes leaves the file's BAT as of the last commit; after
// it, each entry on disk points at synced data.
func (x *vhdxFile) commit() error {
	if err := x.w.Sync(); err != nil {
		return err
	}
	for j, r := range x.pendingBM {
		sb := int64(x.bat[x.bitmapEntry(j)]>>20) << 20
		if _, err := x.w.WriteAt(x.bitmaps[j][r[0]:r[1]], sb+r[0]); err != nil {
			return err
		}
	}
	idx := make([]int64, 0, len(x.pendingBAT))
	for i := range x.pendingBAT {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	// Runs of consecutive entries (sequential writes allocate them in order)
	// go in one write each.
	for len(idx) > 0 {
		n := 1
		for n < len(idx) && idx[n] == idx[0]+int64(n) {
			n++
		}
		if _, err := x.w.WriteAt(encodeBAT(x.bat[idx[0]:idx[0]+int64(n)]), x.batOff+8*idx[0]); err != nil {
			return err
		}
		idx = idx[n:]
	}
	if err := x.w.Sync(); err != nil {
		return err
	}
	clear(x.pendingBAT)
	clear(x.pendingBM)
	return nil
}

func (x *vhdxFile) close() error {
	if x.c == nil {
		return nil
	}
	return x.c.Close()
}
