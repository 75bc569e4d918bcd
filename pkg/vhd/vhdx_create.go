package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// VHDXCreateOptions describes an empty dynamic VHDX for [CreateVHDX].
type VHDXCreateOptions struct {
	// Size is the virtual size in bytes, a positive multiple of the logical sector
	// size, at most 64 TiB.
	Size int64
	// BlockSize is a power of two from 1 MiB to 256 MiB; 0 means 32 MiB, the Windows
	// default.
	BlockSize uint32
	// LogicalSectorSize is 512 or 4096; 0 means 512. PhysicalSectorSize likewise,
	// 0 meaning 4096.
	LogicalSectorSize, PhysicalSectorSize uint32
	// FileWriteGUID, DataWriteGUID and VirtualDiskID are random when zero.
	FileWriteGUID, DataWriteGUID, VirtualDiskID guid.GUID
	// Creator is the diagnostic creator string; "" means "hostcompute".
	Creator string
}

// CreateVHDX writes a new, empty dynamic VHDX at path, which must not exist, with
// the layout Windows uses: headers and region tables in the first MiB, an empty
// 1 MiB log at 1 MiB, the metadata region at 2 MiB and the BAT at 3 MiB. Every
// block is PAYLOAD_BLOCK_NOT_PRESENT, so the disk reads as zeros.
func CreateVHDX(path string, opts VHDXCreateOptions) (err error) {
	if opts.BlockSize == 0 {
		opts.BlockSize = 32 << 20
	}
	if opts.LogicalSectorSize == 0 {
		opts.LogicalSectorSize = 512
	}
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
	pb := (opts.Size + int64(bs) - 1) / int64(bs)
	entries := pb + (pb-1)/chunk
	batLen := (entries*8 + vhdxMiB - 1) / vhdxMiB * vhdxMiB

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
	// The BAT is all zeros (NOT_PRESENT) and the log empty: both stay holes.
	if err := f.Truncate(batOff + batLen); err != nil {
		return err
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

	le := binary.LittleEndian
	md := make([]byte, vhdxMetadataTableSize+64)
	copy(md, vhdxMetadataSignature)
	type item struct {
		id    guid.GUID
		flags uint32
		data  []byte
	}
	u32 := func(v uint32) []byte { return le.AppendUint32(nil, v) }
	id := opts.VirtualDiskID.ToWindowsArray()
	items := []item{
		{VHDXItemFileParameters, 4, append(u32(bs), u32(0)...)},
		{VHDXItemVirtualDiskSize, 6, le.AppendUint64(nil, uint64(opts.Size))},
		{VHDXItemVirtualDiskID, 6, id[:]},
		{VHDXItemLogicalSectorSize, 6, u32(opts.LogicalSectorSize)},
		{VHDXItemPhysicalSectorSize, 6, u32(opts.PhysicalSectorSize)},
	}
	le.PutUint16(md[10:], uint16(len(items)))
	dataOff := uint32(vhdxMetadataTableSize)
	for i, it := range items {
		e := md[32+32*i:]
		putWinGUID(e, it.id)
		le.PutUint32(e[16:], dataOff)
		le.PutUint32(e[20:], uint32(len(it.data)))
		le.PutUint32(e[24:], it.flags)
		copy(md[dataOff:], it.data)
		dataOff += uint32(len(it.data))
	}

	writes := []struct {
		b   []byte
		off int64
	}{
		{ident, 0},
		{rtb, vhdxRegionTable1Offset},
		{rtb, vhdxRegionTable2Offset},
		{md, mdOff},
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
