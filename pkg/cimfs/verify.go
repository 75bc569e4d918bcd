package cimfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Verify walks every structure of the image and returns a *FormatError for the
// first violation: region headers, the file table directory and tables, every record
// reachable from the root (and no unreachable ones), link tables (bounds, names,
// strict order under the image's upcase table), stream tables, data extents and
// their alignment, PE mappings, security descriptors, extended attributes, reparse
// buffers, object ID files (for images written by this package, each entry's digest
// is recomputed) and the removal list. It never follows a directory twice, so a
// cyclic tree is an error, not a hang.
func (im *Image) Verify() error {
	total := 0
	for i, e := range im.ftd {
		if i+1 < len(im.ftd) && e.count != filesPerTable {
			return im.errAt(im.fs.ftd, "file table directory", "table %d holds %d records; only the last table may be partial", i, e.count)
		}
		if e.count > 0 {
			if err := im.checkAligned(e.offset, "file table"); err != nil {
				return err
			}
		}
		total += int(e.count)
	}
	if err := im.checkAligned(im.fs.upcase, "upcase table"); err != nil {
		return err
	}
	// Tables of distinct records cannot hold more records than the regions have room
	// for; this bound keeps overlapping tables from making the walk below huge.
	var room int64
	for _, r := range im.regions {
		room += r.size / recordSizeV1
	}
	if int64(total) > room {
		return im.errAt(im.fs.ftd, "file table directory", "%d records claimed, the regions hold at most %d: tables overlap", total, room)
	}
	seen := make([]bool, total+1)
	nseen := 0
	type item struct {
		id    FileID
		depth int
	}
	stack := []item{{im.Root(), 0}}
	rootRec, err := im.record(im.Root())
	if err != nil {
		return err
	}
	if !rootRec.isDir() {
		return im.errAt(im.fs.ftd, "root directory", "file %d is not a directory", im.Root())
	}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if int(it.id) > total || it.id == 0 {
			return im.errAt(im.fs.ftd, fmt.Sprintf("file record %d", it.id), "no such file")
		}
		if seen[it.id] {
			continue
		}
		seen[it.id] = true
		nseen++
		rec, err := im.record(it.id)
		if err != nil {
			return err
		}
		if err := im.verifyRecord(it.id, &rec); err != nil {
			return err
		}
		if !rec.isDir() {
			continue
		}
		if it.depth > maxPathUnits/2 {
			return im.errAt(rec.data.offset, fmt.Sprintf("directory %d", it.id), "nested deeper than a path allows")
		}
		ents, err := im.verifyDir(it.id, &rec)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if int(e.ID) > total || e.ID == 0 {
				return im.errAt(rec.data.offset, fmt.Sprintf("link table of file %d", it.id), "entry %q names file %d, which does not exist", e.Name, e.ID)
			}
			crec, err := im.record(e.ID)
			if err != nil {
				return err
			}
			if crec.isDir() && seen[e.ID] {
				return im.errAt(rec.data.offset, fmt.Sprintf("link table of file %d", it.id), "directory %d (%q) is reachable twice (cycle or directory hard link)", e.ID, e.Name)
			}
			if crec.isDir() && e.ID == im.Root() {
				return im.errAt(rec.data.offset, fmt.Sprintf("link table of file %d", it.id), "entry %q links the root directory", e.Name)
			}
			stack = append(stack, item{e.ID, it.depth + 1})
		}
	}
	if nseen != total {
		for id := 1; id <= total; id++ {
			if !seen[id] {
				return im.errAt(im.fs.ftd, fmt.Sprintf("file record %d", id), "not reachable from the root")
			}
		}
	}
	if _, err := im.Links(); err != nil {
		return err
	}
	if _, err := im.Removals(); err != nil {
		return err
	}
	return im.verifyObjectIDs()
}

// checkAligned checks an object's alignment for its region's type.
func (im *Image) checkAligned(o regionOffset, object string) error {
	if o == 0 || o.region() >= len(im.regions) {
		return nil
	}
	if t := im.regions[o.region()].typ; int(t) < regionCount && o.offset()%regionAlign[t] != 0 {
		return im.errAt(o, object, "offset not aligned to %d bytes", regionAlign[t])
	}
	return nil
}

func (im *Image) verifyRecord(id FileID, rec *record) error {
	obj := fmt.Sprintf("file record %d", id)
	switch rec.data.typ {
	case streamData:
		if rec.data.length > 0 && !rec.data.sparse {
			if _, err := im.check(rec.data.offset, rec.data.length, "data of "+obj); err != nil {
				return err
			}
			if err := im.checkAligned(rec.data.offset, "data of "+obj); err != nil {
				return err
			}
		}
	case streamPEImage:
		if rec.data.sparse {
			return im.errAt(rec.data.offset, obj, "sparse bit on a PE image stream")
		}
		if _, err := im.readPE(rec.data, "PE image of "+obj); err != nil {
			return err
		}
	case streamLinkTable:
		if rec.data.sparse {
			return im.errAt(rec.data.offset, obj, "sparse bit on a directory")
		}
	}
	if rec.sd != 0 {
		sd, err := im.readPrefixed(rec.sd, "security descriptor of "+obj)
		if err != nil {
			return err
		}
		if err := winfile.ValidateSecurityDescriptor(sd); err != nil {
			return im.errAt(rec.sd, "security descriptor of "+obj, "%v", err)
		}
	}
	if rec.ea != 0 || rec.eaLength != 0 {
		if rec.ea == 0 || rec.eaLength == 0 {
			return im.errAt(rec.ea, "extended attributes of "+obj, "offset %v with length %d", rec.ea, rec.eaLength)
		}
		b, err := im.read(rec.ea, int64(rec.eaLength), "extended attributes of "+obj)
		if err != nil {
			return err
		}
		if err := checkEAChain(b); err != nil {
			return im.errAt(rec.ea, "extended attributes of "+obj, "%v", err)
		}
	}
	if rec.reparse != 0 {
		b, err := im.readPrefixed(rec.reparse, "reparse buffer of "+obj)
		if err != nil {
			return err
		}
		if len(b) < winfile.ReparseHeaderSize {
			return im.errAt(rec.reparse, "reparse buffer of "+obj, "%d bytes, shorter than its header", len(b))
		}
		if tag := binary.LittleEndian.Uint32(b); tag != rec.reparseTag {
			return im.errAt(rec.reparse, "reparse buffer of "+obj, "tag %#x, record says %#x", tag, rec.reparseTag)
		}
		if n := int(binary.LittleEndian.Uint16(b[4:])); n+winfile.ReparseHeaderSize != len(b) {
			return im.errAt(rec.reparse, "reparse buffer of "+obj, "data length %d in a %d-byte buffer", n, len(b))
		}
	} else if rec.reparseTag != 0 {
		return im.errAt(rec.reparse, obj, "reparse tag %#x without a reparse buffer", rec.reparseTag)
	}
	if rec.streamTable != 0 {
		ss, err := im.streamTable(id, *rec)
		if err != nil {
			return err
		}
		var prev []rune
		for i, s := range ss {
			o := fmt.Sprintf("stream %q of %s", s.Name, obj)
			k := nameKey(im.upcase, s.Name)
			if err := checkStreamName(s.Name); err != nil || (i > 0 && compareKeys(prev, k) >= 0) {
				return im.errAt(rec.streamTable, "stream table of "+obj, "stream %d %q is invalid or out of order", i, s.Name)
			}
			prev = k
			if s.s.length > 0 && !s.s.sparse {
				if _, err := im.check(s.s.offset, s.s.length, o); err != nil {
					return err
				}
				if err := im.checkAligned(s.s.offset, o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkEAChain walks a FILE_FULL_EA_INFORMATION chain to exactly its end.
func checkEAChain(b []byte) error {
	if _, err := winfile.DecodeExtendedAttributes(b); err != nil {
		return err
	}
	off := 0
	for n := 0; n <= len(b)/8; n++ {
		if off+8 > len(b) {
			return fmt.Errorf("entry at %d beyond the buffer", off)
		}
		next := int(binary.LittleEndian.Uint32(b[off:]))
		end := off + 8 + int(b[off+5]) + 1 + int(binary.LittleEndian.Uint16(b[off+6:]))
		if next == 0 {
			if (end+3)&^3 < len(b) {
				return fmt.Errorf("%d bytes after the last entry", len(b)-end)
			}
			return nil
		}
		if next%4 != 0 {
			return fmt.Errorf("entry at %d: next offset %d not 4-aligned", off, next)
		}
		off += next
	}
	return fmt.Errorf("chain does not end")
}

// verifyDir checks a directory's link table: bounds, names and strict order.
func (im *Image) verifyDir(id FileID, rec *record) ([]DirEntry, error) {
	obj := fmt.Sprintf("link table of file %d", id)
	if rec.data.length > 0 {
		if err := im.checkAligned(rec.data.offset, obj); err != nil {
			return nil, err
		}
	}
	b, err := im.linkTable(id, rec)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 && int64(binary.LittleEndian.Uint32(b)) != rec.data.length {
		return nil, im.errAt(rec.data.offset, obj, "table length %d, stream length %d", binary.LittleEndian.Uint32(b), rec.data.length)
	}
	n := linkCount(b)
	ents := make([]DirEntry, n)
	var prev []rune
	for i := 0; i < n; i++ {
		nb, _ := linkName(b, n, 4, i)
		if !validUTF16(nb) {
			return nil, im.errAt(rec.data.offset, obj, "name %d is not valid UTF-16", i)
		}
		name := decodeUTF16(nb)
		if err := checkName(name); err != nil {
			return nil, im.errAt(rec.data.offset, obj, "name %d %q is not a valid file name", i, name)
		}
		if i > 0 && compareStored(im.upcase, prev, nb) >= 0 {
			return nil, im.errAt(rec.data.offset, obj, "name %d %q is out of order or a case-insensitive duplicate", i, name)
		}
		prev = nameKey(im.upcase, name)
		ents[i] = DirEntry{Name: name, ID: FileID(binary.LittleEndian.Uint32(b[linkHeaderSize+4*i:]))}
	}
	return ents, nil
}

// verifyObjectIDs checks object ID files; for images written by this package the
// digest of every object is recomputed.
func (im *Image) verifyObjectIDs() error {
	buf := make([]byte, 1<<20)
	own := len(im.regions) - int(im.hdr.own.Count)
	for ri, r := range im.regions {
		if r.objectIDs == "" {
			continue
		}
		b, err := im.readFile(r.objectIDs, 1<<34)
		if err != nil {
			return err
		}
		entries, err := parseObjectIDFile(b, filepath.Base(r.objectIDs), r.index, r.size)
		if err != nil {
			return err
		}
		if !im.hdr.extension || ri < own {
			continue // digests of other writers' algorithms are unknown; parents are verified on their own
		}
		for i, e := range entries {
			h := sha256.New()
			if _, err := io.CopyBuffer(h, io.NewSectionReader(r.f, e.offset, int64(e.id.length)), buf); err != nil {
				return fmt.Errorf("cimfs: reading %s: %w", r.path, err)
			}
			if got := digestOf(h, int64(e.id.length)); !bytes.Equal(got.digest[:], e.id.digest[:]) {
				return formatErr(filepath.Base(r.path), fmt.Sprintf("object %d of %s", i, filepath.Base(r.objectIDs)), e.offset, "content does not match its digest")
			}
		}
	}
	return nil
}

// Usage returns the bytes used by the image's own region and object ID files.
func (im *Image) Usage() (int64, error) {
	var n int64
	own := im.regions[len(im.regions)-int(im.hdr.own.Count):]
	for _, r := range own {
		n += r.size
		if r.objectIDs != "" {
			st, err := fs.Stat(im.fsys, path.Join(im.dir, r.objectIDs))
			if err != nil {
				return 0, err
			}
			n += st.Size()
		}
	}
	return n, nil
}
