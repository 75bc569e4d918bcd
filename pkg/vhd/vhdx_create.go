package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// VHDXCreateOptions describes a new VHDX for [CreateVHDX].
type VHDXCreateOptions struct {
	// Size is the virtual size in bytes, a positive multiple of the logical sector
	// size, at most 64 TiB. A differencing disk has its parent's size: 0 or that.
	Size int64
	// Fixed makes a fixed disk, every block allocated; otherwise the disk is
	// dynamic, or differencing with Parent.
	Fixed bool
	// Parent is the path of the parent VHDX of a differencing disk. The child
	// records it as relative_path and absolute_win32_path and pins the parent's
	// current DataWriteGuid (parent_linkage): the parent must not be written
	// afterwards.
	Parent string
	// BlockSize is a power of two from 1 MiB to 256 MiB; 0 means 32 MiB, the Windows
	// default, and 2 MiB for a differencing disk.
	BlockSize uint32
	// LogicalSectorSize is 512 or 4096; 0 means 512, or the parent's. A
	// differencing disk has its parent's. PhysicalSectorSize likewise, 0 meaning
	// 4096.
	LogicalSectorSize, PhysicalSectorSize uint32
	// FileWriteGUID, DataWriteGUID and VirtualDiskID are random when zero.
	FileWriteGUID, DataWriteGUID, VirtualDiskID guid.GUID
	// Creator is the diagnostic creator string; "" means "hostcompute".
	Creator string
}

// CreateVHDX writes a new, empty VHDX at path, which must not exist: fixed (every
// block allocated, LeaveBlockAllocated set), dynamic, or differencing with
// opts.Parent. It uses the layout Windows uses: headers and region tables in the
// first MiB, an empty 1 MiB log at 1 MiB, the metadata region at 2 MiB and the BAT
// at 3 MiB, payload after it. The headers are written last and the file synced;
// on failure the file is removed.
func CreateVHDX(path string, opts VHDXCreateOptions) (err error) {
	if opts.PhysicalSectorSize == 0 {
		opts.PhysicalSectorSize = 4096
	}
	if opts.Creator == "" {
		opts.Creator = "hostcompute"
	}
	for _, g := range []*guid.GUID{&opts.FileWriteGUID, &opts.DataWriteGUID, &opts.VirtualDiskID} {
		if *g == (guid.GUID{}) {
			var a [16]byte
			if _, err := rand.Read(a[:]); err != nil {
				return err
			}
			*g = guid.FromArray(a)
		}
	}
	var locator []byte
	if opts.Parent != "" {
		if opts.Fixed {
			return fmt.Errorf("%w: a fixed disk with a parent", ErrInvalidOptions)
		}
		parent, err := Open(opts.Parent, true)
		if err != nil {
			return fmt.Errorf("vhd: opening parent: %w", err)
		}
		defer parent.Close()
		if parent.Format() != FormatVHDX {
			return fmt.Errorf("%w: a VHDX differencing disk needs a VHDX parent, %s is %s", ErrInvalidOptions, opts.Parent, parent.Format())
		}
		if opts.Size != 0 && opts.Size != parent.Size() {
			return fmt.Errorf("%w: size %d, but the parent has %d", ErrInvalidOptions, opts.Size, parent.Size())
		}
		if opts.LogicalSectorSize != 0 && int(opts.LogicalSectorSize) != parent.LogicalSectorSize() {
			return fmt.Errorf("%w: logical sector size %d, but the parent has %d", ErrInvalidOptions, opts.LogicalSectorSize, parent.LogicalSectorSize())
		}
		opts.Size, opts.LogicalSectorSize = parent.Size(), uint32(parent.LogicalSectorSize())
		if opts.BlockSize == 0 {
			opts.BlockSize = 2 << 20
		}
		l, err := newParentLocator(parent, opts.Parent, path)
		if err != nil {
			return err
		}
		if locator, err = l.MarshalBinary(); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidOptions, err)
		}
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = 32 << 20
	}
	if opts.LogicalSectorSize == 0 {
		opts.LogicalSectorSize = 512
	}
	bs := opts.BlockSize
	switch {
	case bs < vhdxMiB || bs > 256*vhdxMiB || bs&(bs-1) != 0:
		return fmt.Errorf("%w: VHDX block size %d is not a power of two from 1 MiB to 256 MiB", ErrInvalidOptions, bs)
	case opts.LogicalSectorSize != 512 && opts.LogicalSectorSize != 4096,
		opts.PhysicalSectorSize != 512 && opts.PhysicalSectorSize != 4096:
		return fmt.Errorf("%w: sector sizes %d/%d, want 512 or 4096", ErrInvalidOptions, opts.LogicalSectorSize, opts.PhysicalSectorSize)
	case opts.Size <= 0 || opts.Size > vhdxMaxVirtualSize || opts.Size%int64(opts.LogicalSectorSize) != 0:
		return fmt.Errorf("%w: VHDX size %d is not a positive multiple of %d up to 64 TiB", ErrInvalidOptions, opts.Size, opts.LogicalSectorSize)
	case len(encodeUTF16LE(opts.Creator)) > 512:
		return fmt.Errorf("%w: creator %q longer than 512 bytes in UTF-16", ErrInvalidOptions, opts.Creator)
	}
	const (
		logOff = 1 << 20
		mdOff  = 2 << 20
		batOff = 3 << 20
	)
	chunk := int64(vhdxSectorsPerBitmapBlock) * int64(opts.LogicalSectorSize) / int64(bs)
	entries := vhdxBATEntries(opts.Size, int64(bs), chunk, opts.Parent != "")
	batLen := (entries*8 + vhdxMiB - 1) / vhdxMiB * vhdxMiB
	if batLen > 1<<32-vhdxMiB {
		return fmt.Errorf("%w: a BAT of %d bytes", ErrInvalidOptions, batLen)
	}
	payload := int64(batOff) + batLen
	pb := (opts.Size + int64(bs) - 1) / int64(bs)
	end := payload
	if opts.Fixed {
		end += pb * int64(bs)
	}

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	// The log is empty, and a dynamic disk's BAT all zeros (NOT_PRESENT): holes.
	if err := f.Truncate(end); err != nil {
		return err
	}
	le := binary.LittleEndian
	var bat []byte
	if opts.Fixed {
		// A fixed disk's blocks are allocated on the host too, as the format
		// promises; where the file system cannot, they stay holes.
		if err := allocate(f, payload, end-payload); err != nil {
			return fmt.Errorf("vhd: allocating %d bytes: %w", end-payload, err)
		}
		bat = make([]byte, entries*8)
		for k := range pb {
			le.PutUint64(bat[8*(k+k/chunk):], uint64(payload+k*int64(bs))|VHDXBlockFullyPresent)
		}
	}
	ident := make([]byte, 520)
	copy(ident, vhdxSignature)
	copy(ident[8:], encodeUTF16LE(opts.Creator))

	rt := &VHDXRegionTable{Entries: []VHDXRegion{
		{GUID: VHDXRegionBAT, FileOffset: batOff, Length: uint32(batLen), Required: true},
		{GUID: VHDXRegionMetadata, FileOffset: mdOff, Length: vhdxMiB, Required: true},
	}}
	rtb, err := rt.MarshalBinary()
	if err != nil {
		return err
	}

	type item struct {
		id    guid.GUID
		flags uint32
		data  []byte
	}
	u32 := func(v uint32) []byte { return le.AppendUint32(nil, v) }
	id := opts.VirtualDiskID.ToWindowsArray()
	var fileFlags uint32
	switch {
	case opts.Fixed:
		fileFlags = 1
	case locator != nil:
		fileFlags = 2
	}
	items := []item{
		{VHDXItemFileParameters, 4, append(u32(bs), u32(fileFlags)...)},
		{VHDXItemVirtualDiskSize, 6, le.AppendUint64(nil, uint64(opts.Size))},
		{VHDXItemVirtualDiskID, 6, id[:]},
		{VHDXItemLogicalSectorSize, 6, u32(opts.LogicalSectorSize)},
		{VHDXItemPhysicalSectorSize, 6, u32(opts.PhysicalSectorSize)},
	}
	if locator != nil {
		items = append(items, item{VHDXItemParentLocator, 4, locator})
	}
	md := make([]byte, vhdxMetadataTableSize, vhdxMetadataTableSize+64+len(locator))
	copy(md, vhdxMetadataSignature)
	le.PutUint16(md[10:], uint16(len(items)))
	for i, it := range items {
		e := md[32+32*i:]
		putWinGUID(e, it.id)
		le.PutUint32(e[16:], uint32(len(md)))
		le.PutUint32(e[20:], uint32(len(it.data)))
		le.PutUint32(e[24:], it.flags)
		md = append(md, it.data...)
	}

	writes := []struct {
		b   []byte
		off int64
	}{
		{ident, 0},
		{rtb, vhdxRegionTable1Offset},
		{rtb, vhdxRegionTable2Offset},
		{md, mdOff},
		{bat, batOff},
	}
	for i, off := range []int64{vhdxHeader1Offset, vhdxHeader2Offset} {
		h := &VHDXHeader{
			SequenceNumber: uint64(i),
			FileWriteGUID:  opts.FileWriteGUID,
			DataWriteGUID:  opts.DataWriteGUID,
			Version:        1,
			LogLength:      vhdxMiB,
			LogOffset:      logOff,
		}
		hb, _ := h.MarshalBinary()
		writes = append(writes, struct {
			b   []byte
			off int64
		}{hb, off})
	}
	for _, w := range writes {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			return err
		}
	}
	return f.Sync()
}
