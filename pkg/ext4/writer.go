package ext4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/bits"
	"sort"

	"github.com/hostcompute/hostcompute/pkg/ocilayer"
)

// inode is a file of the image being built. Inode numbers are positions in
// writer.inodes plus one.
type inode struct {
	number                      uint32
	mode                        uint16
	uid, gid                    uint32
	atime, ctime, mtime, crtime uint64
	size                        int64
	links                       uint32
	xattrBlock                  uint32
	blocks                      uint32 // i_blocks in file system blocks (HUGE_FILE)
	flags                       uint32
	iblock                      []byte // i_block: extent root, fast symlink target or inline bytes
	children                    map[string]*inode
	x                           *inodeExtra // nil while all its fields are zero

	// Native mode only.
	implied  bool     // a directory no tar entry has described (yet)
	opaque   bool     // carries trusted.overlay.opaque
	whiteout bool     // an overlay whiteout this layer made (a 0:0 character device)
	owned    []extent // physical blocks owned, freed when the inode is removed
}

// inodeExtra holds what most inodes of a layer do not have: attributes, inline
// data, device numbers. Kept apart, it leaves the inode of a plain file or
// directory at 144 bytes rather than 240, and an image holds one per entry until
// it is laid out.
type inodeExtra struct {
	inline             []byte // data of an inline-data file
	inlineX, blockX    []xattr
	eaInodes           []*inode // inodes holding this inode's large attribute values (native mode)
	devmajor, devminor uint32
}

// ext returns n's extra fields, made when first needed, for writing.
func (n *inode) ext() *inodeExtra {
	if n.x == nil {
		n.x = &inodeExtra{}
	}
	return n.x
}

// Readers of the extra fields: zero values when n has none.
func (n *inode) inline() []byte {
	if n.x == nil {
		return nil
	}
	return n.x.inline
}

func (n *inode) inlineX() []xattr {
	if n.x == nil {
		return nil
	}
	return n.x.inlineX
}

func (n *inode) blockX() []xattr {
	if n.x == nil {
		return nil
	}
	return n.x.blockX
}

func (n *inode) eaInodes() []*inode {
	if n.x == nil {
		return nil
	}
	return n.x.eaInodes
}

func (n *inode) dev() (major, minor uint32) {
	if n.x == nil {
		return 0, 0
	}
	return n.x.devmajor, n.x.devminor
}

func (n *inode) isDir() bool { return n.mode&typeMask == sIFDIR }

// attrs is what an entry sets on an inode.
type attrs struct {
	mode                        uint16 // type and permission bits
	uid, gid                    uint32
	atime, ctime, mtime, crtime uint64
	size                        int64
	linkname                    string
	devmajor, devminor          uint32
	xattrs                      map[string][]byte
}

// writer lays out the image the way compactext4 does: reserved group descriptor blocks,
// then file data (with xattr blocks, long symlink targets and extent blocks) in entry
// order, then directories, the inode table and the bitmaps, all written sequentially.
// Only the fixes that native mode makes depend on compat.
type writer struct {
	compat      bool
	rules       *ocilayer.Validator // the layer rules, checked before each entry is added
	inlineData  bool
	maxDiskSize int64
	maxFileSize int64

	ob       *outBuf
	inodes   []*inode
	gdBlocks uint32

	// Native mode only.
	freed    []extent  // physical runs of removed files: free in the bitmap, zeroed
	dataCRC  uint32    // CRC-32C of all file data, one input of the image UUID
	entries  hash.Hash // SHA-256 of the entries as applied, the other input
	maxTime  uint64    // latest entry modification time (fs encoding), for implied dirs
	maxTimeS int64
	haveTime bool
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newWriter(out Output, o *options) (*writer, error) {
	w := &writer{compat: o.compat, inlineData: o.inlineData, maxDiskSize: o.maxDiskSize, maxFileSize: o.maxFileSize}
	if !w.compat {
		w.entries = sha256.New()
	}
	maxBlocks := (w.maxDiskSize-1)/blockSize + 1
	maxGroups := (maxBlocks-1)/blocksPerGroup + 1
	w.gdBlocks = uint32((maxGroups-1)/groupsPerDescriptorBlock + 1)
	w.ob = newOutBuf(out, int64(1+w.gdBlocks)*blockSize, w.maxDiskSize)
	w.ob.obs = o.observer

	// Inode 1 (bad blocks) and 3-10 stay unused; the root is 2, lost+found 11.
	w.inodes = make([]*inode, 1, 64)
	root := w.newInode(sIFDIR | 0o755)
	root.links = 2 // "." and its own ".."
	root.implied = !w.compat
	w.inodes = append(w.inodes, make([]*inode, firstInode-1-len(w.inodes))...)
	lf := w.newInode(sIFDIR | 0o700)
	w.linkChild(root, "lost+found", lf)
	return w, nil
}

// newInode appends a new inode with the given mode and no other attributes.
func (w *writer) newInode(mode uint16) *inode {
	n := &inode{number: uint32(len(w.inodes) + 1), mode: mode, flags: flagHugeFile}
	if mode&typeMask == sIFDIR {
		n.children = make(map[string]*inode)
		n.links = 1 // "."
	}
	w.inodes = append(w.inodes, n)
	return n
}

func (w *writer) root() *inode { return w.inodes[rootInode-1] }

// linkChild enters child into dir under name.
func (w *writer) linkChild(dir *inode, name string, child *inode) {
	dir.children[name] = child
	child.links++
	if child.isDir() {
		dir.links++
	}
}

// setAttrs copies the entry's attributes (not xattrs, size or data) to n.
func (n *inode) setAttrs(a *attrs) {
	n.mode = a.mode
	n.uid, n.gid = a.uid, a.gid
	n.atime, n.ctime, n.mtime, n.crtime = a.atime, a.ctime, a.mtime, a.crtime
	if a.devmajor != 0 || a.devminor != 0 || n.x != nil {
		n.ext().devmajor, n.ext().devminor = a.devmajor, a.devminor
	}
}

// placeXattrs assigns attributes in the given order to the inode body while they fit,
// else to the attribute block, as compactext4 does. It fails if one fits nowhere.
func placeXattrs(xs []xattr) (inl, blk []xattr, err error) {
	inLeft, blkLeft := xattrInodeRoom, xattrBlockRoom
	for _, x := range xs {
		l := x.size()
		switch {
		case inLeft >= l:
			inl = append(inl, x)
			inLeft -= l
		case blkLeft >= l:
			blk = append(blk, x)
			blkLeft -= l
		default:
			return nil, nil, fmt.Errorf("%w: %s (%d bytes) does not fit", ErrXattr, x.fullName(), len(x.value))
		}
	}
	return inl, blk, nil
}

// sortedXattrs returns the attributes of m in name order.
func sortedXattrs(m map[string][]byte) []xattr {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	xs := make([]xattr, 0, len(names))
	for _, name := range names {
		xs = append(xs, newXattr(name, m[name]))
	}
	return xs
}

// storeXattrs records the placed attributes of n and writes its attribute block.
func (w *writer) storeXattrs(n *inode, inl, blk []xattr) error {
	if len(inl) != 0 || len(blk) != 0 || n.x != nil {
		n.ext().inlineX, n.ext().blockX = inl, blk
	}
	if w.compat {
		// compactext4 rewrites an existing block even when it is now empty.
		if len(blk) == 0 && n.xattrBlock == 0 {
			return nil
		}
		sortXattrsCompat(blk)
	} else {
		if len(blk) == 0 {
			if n.xattrBlock != 0 {
				w.freed = append(w.freed, extent{physical: n.xattrBlock, length: 1})
				n.xattrBlock = 0
				n.blocks--
			}
			return nil
		}
		sortXattrs(blk)
	}
	b := xattrBlock(blk, !w.compat)
	if n.xattrBlock != 0 {
		return w.ob.writeAt(b, int64(n.xattrBlock)*blockSize)
	}
	n.xattrBlock = w.ob.block()
	n.blocks++
	return w.ob.write(b)
}

// writeFile writes size bytes of r as n's data: inline, dense (compat) or with
// all-zero blocks left as holes (native).
func (w *writer) writeFile(ctx context.Context, n *inode, r io.Reader, size int64) error {
	n.size = size
	if n.flags&flagInlineData != 0 {
		inline := make([]byte, size)
		if _, err := io.ReadFull(r, inline); err != nil {
			return dataErr(err)
		}
		n.ext().inline = inline
		if !w.compat {
			w.dataCRC = crc32.Update(w.dataCRC, castagnoli, inline)
		}
		n.iblock = inline[:min(len(inline), inodeDataSize)]
		return nil
	}
	if size == 0 {
		return nil
	}
	var exts []extent
	var dataBlocks uint32
	var logical uint32
	for remaining := size; remaining > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		sp, err := w.ob.space()
		if err != nil {
			return err
		}
		c := int(min(int64(len(sp)), remaining))
		if err := w.ob.grow(int64(c)); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, sp[:c]); err != nil {
			return dataErr(err)
		}
		remaining -= int64(c)
		end := (c + blockSize - 1) &^ (blockSize - 1)
		clear(sp[c:end])
		if w.compat {
			w.ob.commit(end)
			continue
		}
		w.dataCRC = crc32.Update(w.dataCRC, castagnoli, sp[:c])
		kept := 0
		base := w.ob.pos()
		for off := 0; off < end; off += blockSize {
			b := sp[off : off+blockSize]
			if !bytes.Equal(b, zeroBlock[:]) {
				if kept != off {
					copy(sp[kept:], b)
				}
				phys := uint32((base + int64(kept)) / blockSize)
				if k := len(exts) - 1; k >= 0 && exts[k].logical+exts[k].length == logical &&
					exts[k].physical+exts[k].length == phys && exts[k].length < maxExtentLen {
					exts[k].length++
				} else {
					exts = append(exts, extent{logical: logical, physical: phys, length: 1})
				}
				kept += blockSize
				dataBlocks++
			}
			logical++
		}
		w.ob.commit(kept)
	}
	if w.compat {
		blocks := uint32((size + blockSize - 1) / blockSize)
		start := w.ob.block() - blocks
		return w.compatExtents(n, start, blocks)
	}
	return w.nativeExtents(n, exts, dataBlocks)
}

var zeroBlock [blockSize]byte

func dataErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: reading file data: %w", ErrInvalidTar, err)
}

// writeBlob writes b as n's data in contiguous blocks (long symlink targets and
// directories).
func (w *writer) writeBlob(n *inode, b []byte) error {
	start := w.ob.block()
	if err := w.ob.write(b); err != nil {
		return err
	}
	if err := w.ob.padBlock(); err != nil {
		return err
	}
	blocks := w.ob.block() - start
	if w.compat {
		return w.compatExtents(n, start, blocks)
	}
	var exts []extent
	for done := uint32(0); done < blocks; {
		l := min(blocks-done, maxExtentLen)
		exts = append(exts, extent{logical: done, physical: start + done, length: l})
		done += l
	}
	return w.nativeExtents(n, exts, blocks)
}

// compatExtents maps blocks contiguous blocks at start exactly as compactext4 does,
// including its leaf-block count (one extra leaf when the extent count is a multiple
// of 340) and its per-leaf extent count, both wrong for files above about 42.5 GiB.
func (w *writer) compatExtents(n *inode, start, blocks uint32) error {
	fill := func(b []byte, startBlock, offset, total uint32, count uint32, max int) {
		putExtentHeader(b, int(count), max, 0)
		for i := uint32(0); i < count; i++ {
			blk := offset + i*maxExtentLen
			length := min(total-blk, maxExtentLen)
			putExtent(b[12+12*i:], extent{logical: blk, physical: startBlock + blk, length: length})
		}
	}
	root := make([]byte, inodeDataSize)
	used := blocks
	extents := (blocks + maxExtentLen - 1) / maxExtentLen
	switch {
	case extents == 0:
		root = nil
	case extents <= 4:
		fill(root, start, 0, blocks, extents, 4)
	case extents <= 4*extentsPerBlock:
		leaves := extents/extentsPerBlock + 1
		if leaves > 4 {
			return fmt.Errorf("%w: file needs %d extents", ErrTooLarge, extents)
		}
		used += leaves
		putExtentHeader(root, int(leaves), 4, 1)
		for i := uint32(0); i < leaves; i++ {
			offset := i * extentsPerBlock * maxExtentLen
			putExtentIndex(root[12+12*i:], offset, w.ob.block())
			in := min(extents-i*leaves, extentsPerBlock)
			leaf := make([]byte, blockSize)
			fill(leaf, start+offset, offset, blocks, in, extentsPerBlock)
			if err := w.ob.write(leaf); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: file needs %d extents", ErrTooLarge, extents)
	}
	n.iblock = root
	n.flags |= flagExtents
	n.blocks += used
	return nil
}

// nativeExtents builds an extent tree of any depth for exts: the root in i_block holds
// up to four entries, tree blocks of 340 entries each are written after the data.
func (w *writer) nativeExtents(n *inode, exts []extent, dataBlocks uint32) error {
	root := make([]byte, inodeDataSize)
	var meta uint32
	if len(exts) <= 4 {
		putExtentHeader(root, len(exts), 4, 0)
		for i, e := range exts {
			putExtent(root[12+12*i:], e)
		}
	} else {
		type index struct{ logical, block uint32 }
		var level []index
		for i := 0; i < len(exts); i += extentsPerBlock {
			chunk := exts[i:min(i+extentsPerBlock, len(exts))]
			b := make([]byte, blockSize)
			putExtentHeader(b, len(chunk), extentsPerBlock, 0)
			for j, e := range chunk {
				putExtent(b[12+12*j:], e)
			}
			level = append(level, index{chunk[0].logical, w.ob.block()})
			n.owned = append(n.owned, extent{physical: w.ob.block(), length: 1})
			if err := w.ob.write(b); err != nil {
				return err
			}
			meta++
		}
		depth := 1
		for len(level) > 4 {
			var next []index
			for i := 0; i < len(level); i += extentsPerBlock {
				chunk := level[i:min(i+extentsPerBlock, len(level))]
				b := make([]byte, blockSize)
				putExtentHeader(b, len(chunk), extentsPerBlock, depth)
				for j, x := range chunk {
					putExtentIndex(b[12+12*j:], x.logical, x.block)
				}
				next = append(next, index{chunk[0].logical, w.ob.block()})
				n.owned = append(n.owned, extent{physical: w.ob.block(), length: 1})
				if err := w.ob.write(b); err != nil {
					return err
				}
				meta++
			}
			level = next
			depth++
		}
		putExtentHeader(root, len(level), 4, depth)
		for i, x := range level {
			putExtentIndex(root[12+12*i:], x.logical, x.block)
		}
	}
	n.owned = append(n.owned, exts...)
	n.iblock = root
	n.flags |= flagExtents
	n.blocks += dataBlocks + meta
	return nil
}

// free releases a removed inode's number and blocks (native mode).
func (w *writer) free(n *inode) {
	for _, e := range n.owned {
		w.freed = append(w.freed, extent{physical: e.physical, length: e.length})
	}
	if n.xattrBlock != 0 {
		w.freed = append(w.freed, extent{physical: n.xattrBlock, length: 1})
	}
	for _, ea := range n.eaInodes() {
		w.free(ea)
	}
	if n.x != nil {
		n.x.eaInodes = nil
	}
	w.inodes[n.number-1] = nil
}

// placeNative places attributes like placeXattrs, but a value that fits neither in
// the inode nor in the block goes to an inode of its own (the ea_inode feature), and
// only its entry takes room. Inodes that held the previous values are freed.
func (w *writer) placeNative(owner *inode, xs []xattr) (inl, blk []xattr, err error) {
	for _, ea := range owner.eaInodes() {
		owner.blocks -= eaCharge(ea.size)
		w.free(ea)
	}
	if owner.x != nil {
		owner.x.eaInodes = nil
	}
	inLeft, blkLeft := xattrInodeRoom, xattrBlockRoom
	for _, x := range xs {
		if l := x.size(); inLeft >= l {
			inl = append(inl, x)
			inLeft -= l
			continue
		} else if blkLeft >= l {
			blk = append(blk, x)
			blkLeft -= l
			continue
		}
		l := x.entryLen()
		if l > inLeft && l > blkLeft {
			return nil, nil, fmt.Errorf("%w: no room left for the entry of %s", ErrXattr, x.fullName())
		}
		ea := w.newInode(sIFREG | 0o600)
		ea.flags |= flagEAInode
		ea.links = 1
		ea.uid, ea.gid = owner.uid, owner.gid
		ea.size = int64(len(x.value))
		if err := w.writeBlob(ea, x.value); err != nil {
			return nil, nil, err
		}
		owner.ext().eaInodes = append(owner.ext().eaInodes, ea)
		owner.blocks += eaCharge(ea.size)
		x.inum = ea.number
		if inLeft >= l {
			inl = append(inl, x)
			inLeft -= l
		} else {
			blk = append(blk, x)
			blkLeft -= l
		}
	}
	return inl, blk, nil
}

// eaCharge is what a value inode adds to its owner's i_blocks: the kernel charges the
// owner (for quota) with the value's size in blocks, and e2fsck checks it.
func eaCharge(size int64) uint32 { return uint32((size + blockSize - 1) / blockSize) }

// linuxCRC32C is the kernel's crc32c_le(seed, p): no inversion before or after.
func linuxCRC32C(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// finishEAInodes computes the hashes of values held in inodes, which depend on the
// UUID through the checksum seed: each value inode's i_atime and each entry's hash,
// rewriting the attribute blocks that hold such entries. It reports whether any
// value inode exists.
func (w *writer) finishEAInodes(uuid [16]byte) (bool, error) {
	seed := linuxCRC32C(^uint32(0), uuid[:])
	any := false
	for _, n := range w.inodes {
		if n == nil || len(n.eaInodes()) == 0 {
			continue
		}
		any = true
		fix := func(xs []xattr) bool {
			changed := false
			for i := range xs {
				if xs[i].inum != 0 {
					xs[i].eaHash = linuxCRC32C(seed, xs[i].value)
					w.inodes[xs[i].inum-1].atime = uint64(xs[i].eaHash)
					changed = true
				}
			}
			return changed
		}
		fix(n.inlineX())
		if fix(n.blockX()) {
			if err := w.ob.writeAt(xattrBlock(n.blockX(), true), int64(n.xattrBlock)*blockSize); err != nil {
				return false, err
			}
		}
	}
	return any, nil
}

// unlink removes name from dir, freeing what is no longer referenced (native mode).
func (w *writer) unlink(dir *inode, name string) {
	n := dir.children[name]
	delete(dir.children, name)
	n.links--
	if n.isDir() {
		dir.links--
		w.freeTree(n)
	} else if n.links == 0 {
		w.free(n)
	}
}

func (w *writer) freeTree(d *inode) {
	for _, c := range d.children {
		c.links--
		if c.isDir() {
			w.freeTree(c)
		} else if c.links == 0 {
			w.free(c)
		}
	}
	w.free(d)
}

// sortedChildren lists a directory's entries by inode number, then name, as
// compactext4 (and e2fsck's convention) orders them.
func sortedChildren(d *inode) []string {
	names := make([]string, 0, len(d.children))
	for name := range d.children {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := d.children[names[i]].number, d.children[names[j]].number
		if a == b {
			return names[i] < names[j]
		}
		return a < b
	})
	return names
}

// writeDirs writes the directory blocks of d and then of its subdirectories,
// depth first.
func (w *writer) writeDirs(ctx context.Context, d, parent *inode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names := sortedChildren(d)
	var buf []byte
	left := blockSize
	finish := func() {
		// A filler entry with inode 0 covers the rest of the block.
		e := make([]byte, left)
		binary.LittleEndian.PutUint16(e[4:], uint16(left))
		buf = append(buf, e...)
		left = blockSize
	}
	entry := func(ino uint32, name string, mode uint16) {
		rl := (directoryEntryFixed + len(name) + 3) &^ 3
		if left < rl+12 {
			finish()
		}
		e := make([]byte, rl)
		binary.LittleEndian.PutUint32(e[0:], ino)
		binary.LittleEndian.PutUint16(e[4:], uint16(rl))
		e[6] = uint8(len(name))
		e[7] = fileType(mode)
		copy(e[8:], name)
		buf = append(buf, e...)
		left -= rl
	}
	entry(d.number, ".", d.mode)
	entry(parent.number, "..", parent.mode)
	for _, name := range names {
		c := d.children[name]
		entry(c.number, name, c.mode)
	}
	finish()
	d.size = int64(len(buf))
	if err := w.writeBlob(d, buf); err != nil {
		return err
	}
	for _, name := range names {
		if c := d.children[name]; c.isDir() {
			if err := w.writeDirs(ctx, c, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// encodeInode writes n's 256-byte inode into b.
func encodeInode(b []byte, n *inode) {
	le := binary.LittleEndian
	le.PutUint16(b[0:], n.mode)
	le.PutUint16(b[2:], uint16(n.uid))
	le.PutUint32(b[4:], uint32(n.size))
	le.PutUint32(b[8:], uint32(n.atime))
	le.PutUint32(b[12:], uint32(n.ctime))
	le.PutUint32(b[16:], uint32(n.mtime))
	le.PutUint16(b[24:], uint16(n.gid))
	le.PutUint16(b[26:], uint16(n.links))
	le.PutUint32(b[28:], n.blocks)
	le.PutUint32(b[32:], n.flags)
	if n.flags&flagEAInode != 0 {
		le.PutUint32(b[36:], 1) // the value's reference count (low 32 bits in i_version)
	}
	switch n.mode & typeMask {
	case sIFDIR, sIFREG, sIFLNK:
		copy(b[40:100], n.iblock)
	case sIFBLK, sIFCHR:
		major, minor := n.dev()
		dev := minor&0xff | major<<8 | (minor&0xffffff00)<<12
		le.PutUint32(b[44:], dev)
	}
	le.PutUint32(b[104:], n.xattrBlock)
	le.PutUint32(b[108:], uint32(n.size>>32))
	le.PutUint16(b[120:], uint16(n.uid>>16))
	le.PutUint16(b[122:], uint16(n.gid>>16))
	le.PutUint16(b[128:], extraIsize)
	le.PutUint32(b[132:], uint32(n.ctime>>32))
	le.PutUint32(b[136:], uint32(n.mtime>>32))
	le.PutUint32(b[140:], uint32(n.atime>>32))
	le.PutUint32(b[144:], uint32(n.crtime))
	le.PutUint32(b[148:], uint32(n.crtime>>32))
	if xs := n.inlineX(); len(xs) != 0 {
		le.PutUint32(b[inodeUsedSize:], xattrMagic)
		if n.flags&flagInlineData != 0 && xs[0].index == 7 && xs[0].name == "data" {
			// The data past i_block goes in the first attribute, system.data.
			xs = append([]xattr(nil), xs...)
			xs[0].value = n.inline()[len(n.iblock):]
		}
		putXattrs(xs, b[inodeUsedSize+4:], 0)
	}
}

// groupCount and bestGroupCount choose the number of groups and inodes per group as
// compactext4 does: the fewest groups that hold the blocks written so far plus each
// group's inode table and bitmaps, the smallest inodes-per-group on a tie.
func groupCount(blocks, inodes, inodesPerGroup uint32) uint32 {
	inodeBlocksPerGroup := inodesPerGroup * inodeSize / blockSize
	dataBlocksPerGroup := blocksPerGroup - inodeBlocksPerGroup - 2
	minBlocks := (inodes-1)/inodesPerGroup*dataBlocksPerGroup + 1
	blocks = max(blocks, minBlocks)
	return (blocks + dataBlocksPerGroup - 1) / dataBlocksPerGroup
}

func bestGroupCount(blocks, inodes uint32) (groups, inodesPerGroup uint32) {
	groups = ^uint32(0)
	for ipg := uint32(inodesPerGroupIncrement); ipg <= maxInodesPerGroup; ipg += inodesPerGroupIncrement {
		if g := groupCount(blocks, inodes, ipg); g < groups {
			groups, inodesPerGroup = g, ipg
		}
	}
	return groups, inodesPerGroup
}

// close writes directories, the inode table, bitmaps, group descriptors and the
// superblock, and sizes the output.
func (w *writer) close(ctx context.Context) (*Result, error) {
	var uuid, hashSeed [16]byte
	eaInodes := false
	if !w.compat {
		t := w.maxTime
		for _, n := range w.inodes {
			if n != nil && n.implied {
				n.atime, n.ctime, n.mtime, n.crtime = t, t, t, t
			}
		}
		// The UUID and hash seed come from the entries and the data, the whole input
		// of the image given the options.
		h := sha256.New()
		h.Write(w.entries.Sum(nil))
		fmt.Fprintf(h, "crc %d inline %v max %d", w.dataCRC, w.inlineData, w.maxDiskSize)
		sum := h.Sum(nil)
		copy(uuid[:], sum[:16])
		uuid[6] = uuid[6]&0x0f | 0x80 // version 8: name-based, custom hash
		uuid[8] = uuid[8]&0x3f | 0x80
		copy(hashSeed[:], sum[16:32])
		var err error
		if eaInodes, err = w.finishEAInodes(uuid); err != nil {
			return nil, err
		}
	}
	root := w.root()
	if err := w.writeDirs(ctx, root, root); err != nil {
		return nil, err
	}

	tableStart := w.ob.block()
	groups, ipg := bestGroupCount(tableStart, uint32(len(w.inodes)))
	var ib [inodeSize]byte
	for _, n := range w.inodes {
		clear(ib[:])
		if n != nil {
			encodeInode(ib[:], n)
		}
		if err := w.ob.write(ib[:]); err != nil {
			return nil, err
		}
	}
	if err := w.ob.skip(int64(groups*ipg-uint32(len(w.inodes))) * inodeSize); err != nil {
		return nil, err
	}

	bitmapStart := w.ob.block()
	validData := bitmapStart + 2*groups
	diskSize := max(validData, (groups-1)*blocksPerGroup+1)
	usedGdBlocks := (groups-1)/groupsPerDescriptorBlock + 1
	if usedGdBlocks > w.gdBlocks {
		return nil, fmt.Errorf("%w: %d groups need more descriptor blocks than reserved for %d bytes", ErrTooLarge, groups, w.maxDiskSize)
	}
	// Free runs by group, for native mode.
	sort.Slice(w.freed, func(i, j int) bool { return w.freed[i].physical < w.freed[j].physical })

	gdt := make([]byte, usedGdBlocks*blockSize)
	itBlocks := ipg * inodeSize / blockSize
	var usedBlocks, usedInodes uint32
	bm := make([]byte, 2*blockSize)
	for g := uint32(0); g < groups; g++ {
		clear(bm)
		bb, ib := bm[:blockSize], bm[blockSize:]
		first := g * blocksPerGroup
		setBits := func(b []byte, from, to uint32) {
			for j := from; j < to; j++ {
				b[j/8] |= 1 << (j % 8)
			}
		}
		// Every block before the bitmaps' end is in use...
		if validData > first {
			n := min(validData-first, blocksPerGroup)
			for j := uint32(0); j < n/8; j++ {
				bb[j] = 0xff
			}
			setBits(bb, n&^7, n)
		}
		// ...except the unused reserved descriptor blocks...
		if g == 0 {
			for j := 1 + usedGdBlocks; j < 1+w.gdBlocks; j++ {
				bb[j/8] &^= 1 << (j % 8)
			}
		}
		// ...and the blocks of removed files.
		for _, e := range w.freed {
			for j := e.physical; j < e.physical+e.length; j++ {
				if j >= first && j < first+blocksPerGroup {
					bb[(j-first)/8] &^= 1 << ((j - first) % 8)
				}
			}
		}
		// Blocks past the end of the disk count as used.
		if g == groups-1 && diskSize%blocksPerGroup != 0 {
			setBits(bb, diskSize%blocksPerGroup, blocksPerGroup)
		}
		var dirs, inodesUsed uint32
		for j := uint32(0); j < ipg; j++ {
			ino := 1 + g*ipg + j
			var n *inode
			if int(ino) <= len(w.inodes) {
				n = w.inodes[ino-1]
			}
			if ino < firstInode || n != nil {
				ib[j/8] |= 1 << (j % 8)
				inodesUsed++
			}
			if n != nil && n.isDir() {
				dirs++
			}
		}
		if !w.compat {
			// The bits past the group's inodes must be set; compactext4 leaves them
			// clear, which e2fsck reports.
			setBits(ib, ipg, blocksPerGroup)
		}
		var blocksUsed uint32
		for _, c := range bb {
			blocksUsed += uint32(bits.OnesCount8(c))
		}
		if err := w.ob.write(bm); err != nil {
			return nil, err
		}
		d := gdt[g*groupDescriptorSize:]
		le := binary.LittleEndian
		le.PutUint32(d[0:], bitmapStart+2*g)
		le.PutUint32(d[4:], bitmapStart+2*g+1)
		le.PutUint32(d[8:], tableStart+g*itBlocks)
		le.PutUint16(d[12:], uint16(blocksPerGroup-blocksUsed))
		le.PutUint16(d[14:], uint16(ipg-inodesUsed))
		le.PutUint16(d[16:], uint16(dirs))
		usedBlocks += blocksUsed
		usedInodes += inodesUsed
	}
	if err := w.ob.skip(int64(diskSize-validData) * blockSize); err != nil {
		return nil, err
	}
	if err := w.ob.flush(); err != nil {
		return nil, err
	}
	w.ob.wb.stop()
	w.ob.wb = nil // writes from here on patch earlier regions
	size := int64(diskSize) * blockSize
	if err := w.ob.out.Truncate(size); err != nil {
		return nil, fmt.Errorf("sizing image: %w", err)
	}
	if err := w.ob.writeAt(gdt, blockSize); err != nil {
		return nil, err
	}

	res := &Result{
		Size:           size,
		Blocks:         diskSize,
		FreeBlocks:     blocksPerGroup*groups - usedBlocks,
		Inodes:         ipg * groups,
		FreeInodes:     ipg*groups - usedInodes,
		Groups:         groups,
		InodesPerGroup: ipg,
		UUID:           uuid,
	}

	sb := make([]byte, blockSize)
	s := sb[superBlockOffset:]
	le := binary.LittleEndian
	le.PutUint32(s[0:], res.Inodes)
	le.PutUint32(s[4:], diskSize)
	le.PutUint32(s[12:], res.FreeBlocks)
	le.PutUint32(s[16:], res.FreeInodes)
	le.PutUint32(s[24:], 2) // 1024 << 2
	le.PutUint32(s[28:], 2)
	le.PutUint32(s[32:], blocksPerGroup)
	le.PutUint32(s[36:], blocksPerGroup)
	le.PutUint32(s[40:], ipg)
	le.PutUint16(s[56:], superBlockMagic)
	le.PutUint16(s[58:], 1) // cleanly unmounted
	le.PutUint16(s[60:], 1) // continue on errors
	le.PutUint32(s[76:], 1) // dynamic revision
	le.PutUint32(s[84:], firstInode)
	le.PutUint16(s[88:], inodeSize)
	le.PutUint32(s[92:], compatExtAttr|compatSparseSuper2)
	incompat := uint32(incompatFiletype | incompatExtents | incompatFlexBg)
	if w.inlineData {
		incompat |= incompatInlineData
	}
	if eaInodes {
		incompat |= incompatEAInode
	}
	le.PutUint32(s[96:], incompat)
	le.PutUint32(s[100:], roCompatLargeFile|roCompatHugeFile|roCompatExtraIsize|roCompatReadonly)
	copy(s[104:], res.UUID[:])
	copy(s[236:], hashSeed[:])
	le.PutUint16(s[348:], extraIsize)
	le.PutUint16(s[350:], extraIsize)
	s[372] = 31 // log groups per flex: one flex group
	le.PutUint32(s[616:], lostFoundInode)
	if err := w.ob.writeAt(sb, 0); err != nil {
		return nil, err
	}

	// Blocks of removed files are free; zero them so no stale data stays readable in
	// the image and the bytes do not depend on what was replaced.
	var z []byte
	if len(w.freed) > 0 {
		z = make([]byte, 256*blockSize)
	}
	for _, e := range w.freed {
		for done := uint32(0); done < e.length; {
			c := min(e.length-done, 256)
			if err := w.ob.writeAt(z[:c*blockSize], int64(e.physical+done)*blockSize); err != nil {
				return nil, err
			}
			done += c
		}
	}
	return res, nil
}
