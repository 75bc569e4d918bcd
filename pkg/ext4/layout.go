package ext4

import (
	"encoding/binary"
	"sort"
	"strings"
)

// On-disk constants of the layout both modes write (see the package documentation).
const (
	blockSize      = 4096
	blocksPerGroup = blockSize * 8 // one block bitmap block per group
	inodeSize      = 256
	inodeUsedSize  = 152 // fields through i_crtime_extra
	inodeExtraSize = inodeSize - inodeUsedSize
	extraIsize     = inodeUsedSize - 128

	rootInode      = 2
	firstInode     = 11 // first non-reserved inode, also lost+found
	lostFoundInode = firstInode

	maxInodesPerGroup       = blockSize * 8 // one inode bitmap block per group
	inodesPerGroupIncrement = blockSize / inodeSize

	groupDescriptorSize      = 32 // no 64bit feature: at most 2^32 blocks
	groupsPerDescriptorBlock = blockSize / groupDescriptorSize

	defaultMaxDiskSize = 16 << 30
	maxMaxDiskSize     = 16 << 40

	maxLinks         = 65000
	compatMaxFile    = 128 << 30 // compactext4's file size limit
	smallSymlinkSize = 59        // longest symlink target stored in i_block
	inodeDataSize    = 60        // size of i_block
	maxExtentLen     = 0x8000
	extentNodeSize   = 12
	extentsPerBlock  = blockSize/extentNodeSize - 1

	xattrMagic          = 0xEA020000
	maxXattrValue       = 65536                  // XATTR_SIZE_MAX: the largest value getxattr returns
	xattrInodeRoom      = inodeExtraSize - 4 - 4 // magic, terminator
	xattrBlockRoom      = blockSize - 32 - 4     // header, terminator
	inlineDataOverhead  = 4 + 4 + 16 + 4         // magic, terminator, entry, "data"
	inlineDataMaxSize   = inodeDataSize + inodeExtraSize - inlineDataOverhead
	extentHeaderMagic   = 0xF30A
	superBlockMagic     = 0xEF53
	superBlockOffset    = 1024
	directoryEntryFixed = 8
)

// File type bits of i_mode.
const (
	sIFIFO   = 0x1000
	sIFCHR   = 0x2000
	sIFDIR   = 0x4000
	sIFBLK   = 0x6000
	sIFREG   = 0x8000
	sIFLNK   = 0xA000
	sIFSOCK  = 0xC000
	typeMask = 0xF000
)

// Inode flags.
const (
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagInlineData = 0x10000000
	flagEAInode    = 0x200000 // the inode holds an extended attribute value
)

// Feature flags.
const (
	compatExtAttr      = 0x8
	compatSparseSuper2 = 0x200

	incompatEAInode = 0x400

	incompatFiletype   = 0x2
	incompatExtents    = 0x40
	incompatFlexBg     = 0x200
	incompatInlineData = 0x8000

	roCompatLargeFile  = 0x2
	roCompatHugeFile   = 0x8
	roCompatExtraIsize = 0x40
	roCompatReadonly   = 0x1000
)

// fsTime encodes a time as ext4 stores it: the low 34 bits are seconds since the epoch
// (the two bits above the 32-bit field are the "epoch" bits of the extra field) and the
// bits above hold the nanoseconds, so that the base field is the low 32 bits and the
// extra field is the value shifted right by 32. It follows compactext4 exactly,
// including what it does with times before 1970 (the high bits of the negative seconds
// spill into the extra field), because compatibility mode must produce its bytes.
func fsTime(sec int64, nsec int64, zero bool) uint64 {
	if zero {
		return 0
	}
	if sec < -0x80000000 {
		return 0x80000000
	}
	if sec > 0x37fffffff {
		return 0x37fffffff
	}
	return uint64(sec) | uint64(nsec)<<34
}

// fsTimeNative encodes a time as ext4 does: the low 32 bits of the seconds, two
// epoch bits extending them to 34 bits of signed range, and the nanoseconds above.
// fsTime, compactext4's encoding, corrupts times before 1970.
func fsTimeNative(sec int64, nsec int64, zero bool) uint64 {
	if zero {
		return 0
	}
	if sec < -0x80000000 {
		return 0x80000000
	}
	if sec > 0x37fffffff {
		return 0x37fffffff
	}
	epoch := uint64((sec-int64(int32(sec)))>>32) & 3
	return uint64(uint32(sec)) | epoch<<32 | uint64(nsec)<<34
}

// fsTimeDecode is compactext4's inverse of fsTime; compatibility mode round-trips
// times through it where compactext4 does (implied directories, opaque whiteouts).
func fsTimeDecode(t uint64) (sec, nsec int64, zero bool) {
	if t == 0 {
		return 0, 0, true
	}
	s := int64(t & 0x3ffffffff)
	if s > 0x7fffffff && s < 0x100000000 {
		s = int64(int32(uint32(s)))
	}
	// time.Unix normalises nanoseconds ≥ 1e9 into seconds.
	ns := int64(t >> 34)
	s += ns / 1e9
	ns %= 1e9
	return s, ns, false
}

// roundTripTime is fsTime(fsTimeDecode(t)).
func roundTripTime(t uint64) uint64 {
	s, ns, z := fsTimeDecode(t)
	return fsTime(s, ns, z)
}

// xattr is one extended attribute as stored: the name without its prefix and the
// prefix's index.
type xattr struct {
	index uint8
	name  string
	value []byte
	// inum is the inode holding the value (ea_inode feature, native mode only), 0 when
	// the value is stored beside the entry; eaHash is then the value's hash, which the
	// entry hash covers instead of the value.
	inum   uint32
	eaHash uint32
}

func (x *xattr) entryLen() int { return (len(x.name)+3)&^3 + 16 }
func (x *xattr) size() int     { return x.entryLen() + x.valueLen() }

// valueLen is the space the value takes beside the entries: none when an inode holds it.
func (x *xattr) valueLen() int {
	if x.inum != 0 {
		return 0
	}
	return (len(x.value) + 3) &^ 3
}

// hash is the entry hash: of the name and the value, or of the name and the value's
// hash for a value in an inode (ext4_xattr_inode_verify_hashes).
func (x *xattr) hash() uint32 {
	if x.inum != 0 {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], x.eaHash)
		return xattrHash(x.name, b[:])
	}
	return xattrHash(x.name, x.value)
}

// fullName is the attribute name with its prefix restored.
func (x *xattr) fullName() string {
	for _, p := range xattrPrefixes {
		if p.index == x.index {
			return p.prefix + x.name
		}
	}
	return x.name
}

// xattrPrefixes is the table of name prefixes ext4 replaces by an index, in the order
// the longer prefixes are tried first.
var xattrPrefixes = []struct {
	index  uint8
	prefix string
}{
	{2, "system.posix_acl_access"},
	{3, "system.posix_acl_default"},
	{8, "system.richacl"},
	{7, "system."},
	{1, "user."},
	{4, "trusted."},
	{6, "security."},
}

func newXattr(name string, value []byte) xattr {
	for _, p := range xattrPrefixes {
		if strings.HasPrefix(name, p.prefix) {
			return xattr{index: p.index, name: name[len(p.prefix):], value: value}
		}
	}
	return xattr{name: name, value: value}
}

// xattrHash is ext4's per-entry hash (ext4_xattr_hash_entry, unsigned name bytes).
func xattrHash(name string, value []byte) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(name[i])
	}
	for i := 0; i+3 < len(value); i += 4 {
		h = h<<16 ^ h>>16 ^ binary.LittleEndian.Uint32(value[i:])
	}
	if len(value)%4 != 0 {
		var last [4]byte
		copy(last[:], value[len(value)&^3:])
		h = h<<16 ^ h>>16 ^ binary.LittleEndian.Uint32(last[:])
	}
	return h
}

// putXattrs encodes entries from the start of b and values packed from its end. Value
// offsets are relative to the start of b plus delta.
func putXattrs(xs []xattr, b []byte, delta int) {
	off := len(b)
	e := b
	for i := range xs {
		x := &xs[i]
		e[0] = uint8(len(x.name))
		e[1] = x.index
		binary.LittleEndian.PutUint32(e[8:], uint32(len(x.value)))
		binary.LittleEndian.PutUint32(e[12:], x.hash())
		copy(e[16:], x.name)
		if x.inum != 0 {
			binary.LittleEndian.PutUint16(e[2:], 0)
			binary.LittleEndian.PutUint32(e[4:], x.inum)
		} else {
			off -= x.valueLen()
			binary.LittleEndian.PutUint16(e[2:], uint16(off+delta))
			binary.LittleEndian.PutUint32(e[4:], 0)
			copy(b[off:], x.value)
		}
		e = e[x.entryLen():]
	}
}

// sortXattrsCompat sorts block attributes with compactext4's comparison, which is not a
// strict weak order; sort.Slice with the same input order gives the same result as
// compactext4 built with the same Go release.
func sortXattrsCompat(xs []xattr) {
	sort.Slice(xs, func(i, j int) bool {
		return xs[i].index < xs[j].index ||
			len(xs[i].name) < len(xs[j].name) ||
			xs[i].name < xs[j].name
	})
}

// sortXattrs sorts block attributes in the order the kernel's lookup relies on:
// index, then name length, then name.
func sortXattrs(xs []xattr) {
	sort.SliceStable(xs, func(i, j int) bool {
		a, b := &xs[i], &xs[j]
		if a.index != b.index {
			return a.index < b.index
		}
		if len(a.name) != len(b.name) {
			return len(a.name) < len(b.name)
		}
		return a.name < b.name
	})
}

// xattrBlock encodes an attribute block.
func xattrBlock(xs []xattr, native bool) []byte {
	b := make([]byte, blockSize)
	binary.LittleEndian.PutUint32(b[0:], xattrMagic)
	binary.LittleEndian.PutUint32(b[4:], 1) // reference count
	binary.LittleEndian.PutUint32(b[8:], 1) // blocks
	putXattrs(xs, b[32:], 32)
	if native {
		// ext4_xattr_rehash: the header hash combines the entry hashes.
		var h uint32
		for i := range xs {
			eh := xs[i].hash()
			if eh == 0 {
				h = 0
				break
			}
			h = h<<16 ^ h>>16 ^ eh
		}
		binary.LittleEndian.PutUint32(b[12:], h)
	}
	return b
}

// extent is one run of blocks: logical file block, first physical block, length.
type extent struct {
	logical, physical, length uint32
}

func putExtentHeader(b []byte, entries, max, depth int) {
	binary.LittleEndian.PutUint16(b[0:], extentHeaderMagic)
	binary.LittleEndian.PutUint16(b[2:], uint16(entries))
	binary.LittleEndian.PutUint16(b[4:], uint16(max))
	binary.LittleEndian.PutUint16(b[6:], uint16(depth))
	binary.LittleEndian.PutUint32(b[8:], 0)
}

func putExtent(b []byte, e extent) {
	binary.LittleEndian.PutUint32(b[0:], e.logical)
	binary.LittleEndian.PutUint16(b[4:], uint16(e.length))
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint32(b[8:], e.physical)
}

func putExtentIndex(b []byte, logical, leaf uint32) {
	binary.LittleEndian.PutUint32(b[0:], logical)
	binary.LittleEndian.PutUint32(b[4:], leaf)
	binary.LittleEndian.PutUint32(b[8:], 0)
}

// fileType is the directory entry file type of a mode.
func fileType(mode uint16) uint8 {
	switch mode & typeMask {
	case sIFREG:
		return 1
	case sIFDIR:
		return 2
	case sIFCHR:
		return 3
	case sIFBLK:
		return 4
	case sIFIFO:
		return 5
	case sIFSOCK:
		return 6
	case sIFLNK:
		return 7
	}
	return 0
}
