package cimfs

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// The tree being written lives in the staging folder (see spill.go):
//
//   - files: one fixed-size record per file (a fileIndex, 1-based; the root is 1),
//     written when the file's streams are complete.
//   - entries: one fixed-size record per name: the directory it is in (the
//     directory's dirKey), the file it names, its name in names, and the next
//     entry of the same directory; replaced and removed names are marked dead.
//   - heads: per dirKey, the last entry added to that directory.
//   - index: (dirKey, upcased name) → entry, flags and the file's fileIndex (a
//     directory: its dirKey), for lookups while writing.
//   - streams: the alternate streams of files, per file a run of name and stream.
//
// A directory's dirKey is the fileIndex of the first directory made at its place;
// a directory that replaces a directory takes it over, keeping the children.
// Paths of directories looked up recently are cached in memory (bounded).
type spillTree struct {
	files   *diskArray
	entries *diskArray
	heads   *diskArray
	index   *diskHash
	names   *spillFile
	streams *spillFile

	nfiles   uint64
	nentries uint64
	dirs     map[string]uint64 // recent directory paths (upcased, '\'-joined) → dirKey
}

const (
	fileRecSize  = 128
	entryRecSize = 32
	dirCacheMax  = 4096

	rootIndex = 1

	// Flags of an index entry (low byte of its first value).
	ixDir     = 1
	ixReparse = 2
	ixAdded   = 4

	entryDead = 1 << 63 // in an entry's fileIndex word
)

// Flags of a file record.
const (
	frDir     = 1
	frNoData  = 2
	frAdded   = 4
	frWritten = 8
)

func newSpillTree(c *pageCache, staging string) (t *spillTree, err error) {
	t = &spillTree{dirs: map[string]uint64{}}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	p := func(n string) string { return filepath.Join(staging, n) }
	if t.files, err = newDiskArray(c, p("files"), fileRecSize); err != nil {
		return nil, err
	}
	if t.entries, err = newDiskArray(c, p("entries"), entryRecSize); err != nil {
		return nil, err
	}
	if t.heads, err = newDiskArray(c, p("heads"), 8); err != nil {
		return nil, err
	}
	if t.index, err = newDiskHash(c, p("index")); err != nil {
		return nil, err
	}
	if t.names, err = newSpillFile(p("names")); err != nil {
		return nil, err
	}
	if t.streams, err = newSpillFile(p("streams")); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *spillTree) close() {
	t.files.close()
	t.entries.close()
	t.heads.close()
	t.index.close()
	t.names.close()
	t.streams.close()
}

// newFile reserves a fileIndex; the format numbers files with 32 bits.
func (t *spillTree) newFile() (uint64, error) {
	if t.nfiles >= 1<<32-2 {
		return 0, fmt.Errorf("%w: more than %d files", ErrTooLarge, t.nfiles)
	}
	t.nfiles++
	return t.nfiles, nil
}

// putFile writes file i's record; its alternate streams go to the streams file.
func (t *spillTree) putFile(i uint64, f *wfile) error {
	var b [fileRecSize]byte
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(f.info.CreationTime))
	le.PutUint64(b[8:], uint64(f.info.LastAccessTime))
	le.PutUint64(b[16:], uint64(f.info.LastWriteTime))
	le.PutUint64(b[24:], uint64(f.info.ChangeTime))
	le.PutUint32(b[32:], f.info.FileAttributes)
	fl := byte(frWritten)
	if f.isDir {
		fl |= frDir
	}
	if f.noData {
		fl |= frNoData
	}
	if f.added {
		fl |= frAdded
	}
	b[36] = fl
	f.data.put(b[40:])
	le.PutUint16(b[58:], f.eaLen)
	le.PutUint32(b[60:], f.rpTag)
	le.PutUint64(b[64:], uint64(f.sd))
	le.PutUint64(b[72:], uint64(f.ea))
	le.PutUint64(b[80:], uint64(f.rp))
	if len(f.streams) > 0 {
		le.PutUint64(b[88:], uint64(t.streams.size()))
		le.PutUint32(b[96:], uint32(len(f.streams)))
		var sb [2 + streamSize]byte
		for _, s := range f.streams {
			le.PutUint16(sb[:], uint16(len(s.name)))
			t.streams.append(sb[:2])
			t.streams.append([]byte(s.name))
			s.s.put(sb[2:])
			t.streams.append(sb[2:])
		}
		if t.streams.err != nil {
			return t.streams.err
		}
	}
	le.PutUint64(b[104:], f.dirKey)
	return t.files.put(i, b[:])
}

// getFile reads file i's record; with streams set, its alternate streams too.
func (t *spillTree) getFile(i uint64, withStreams bool) (*wfile, error) {
	var b [fileRecSize]byte
	if err := t.files.get(i, b[:]); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	fl := b[36]
	if fl&frWritten == 0 {
		return nil, fmt.Errorf("cimfs: file %d has no record", i)
	}
	f := &wfile{
		info: winfile.BasicInfo{
			CreationTime:   winfile.Filetime(le.Uint64(b[0:])),
			LastAccessTime: winfile.Filetime(le.Uint64(b[8:])),
			LastWriteTime:  winfile.Filetime(le.Uint64(b[16:])),
			ChangeTime:     winfile.Filetime(le.Uint64(b[24:])),
			FileAttributes: le.Uint32(b[32:]),
		},
		isDir:  fl&frDir != 0,
		noData: fl&frNoData != 0,
		added:  fl&frAdded != 0,
		data:   getStream(b[40:]),
		eaLen:  le.Uint16(b[58:]),
		rpTag:  le.Uint32(b[60:]),
		sd:     regionOffset(le.Uint64(b[64:])),
		ea:     regionOffset(le.Uint64(b[72:])),
		rp:     regionOffset(le.Uint64(b[80:])),
		dirKey: le.Uint64(b[104:]),
	}
	// The data stream was stored in 16 bytes at 40..56; bytes 56 and 57 are free.
	f.nstreams = int(le.Uint32(b[96:]))
	if withStreams && f.nstreams > 0 {
		off := int64(le.Uint64(b[88:]))
		for range f.nstreams {
			var sb [2]byte
			if err := t.streams.readAt(sb[:], off); err != nil {
				return nil, err
			}
			n := int(le.Uint16(sb[:]))
			nb := make([]byte, n+streamSize)
			if err := t.streams.readAt(nb, off+2); err != nil {
				return nil, err
			}
			f.streams = append(f.streams, adsEntry{name: string(nb[:n]), s: getStream(nb[n:])})
			off += int64(2 + n + streamSize)
		}
	}
	return f, nil
}

// indexKey is the index key of name key in directory dirKey.
func indexKey(dirKey uint64, key string) hashKey {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], dirKey)
	h.Write(b[:])
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return hashKey(h.Sum(sum[:0])[:24])
}

// ixEntry is what the index holds for a name.
type ixEntry struct {
	entry  uint64
	flags  uint8
	file   uint64 // fileIndex
	dirKey uint64 // of a directory
}

func (t *spillTree) lookup(dirKey uint64, key string) (ixEntry, bool, error) {
	k := indexKey(dirKey, key)
	a, b, ok, err := t.index.get(&k)
	return ixEntry{entry: a >> 8, flags: uint8(a), file: b & (1<<32 - 1), dirKey: b >> 32}, ok, err
}

// link adds name (upcased key) to directory dirKey, naming file (of dirKey sub
// when a directory), replacing what the name had (old).
func (t *spillTree) link(dirKey uint64, name, key string, file, sub uint64, flags uint8, old *ixEntry) (uint64, error) {
	if old != nil {
		if err := t.killEntry(old.entry); err != nil {
			return 0, err
		}
	}
	t.nentries++
	e := t.nentries
	head, err := t.heads.getUint64(dirKey)
	if err != nil {
		return 0, err
	}
	var b [entryRecSize]byte
	le := binary.LittleEndian
	le.PutUint64(b[0:], dirKey)
	le.PutUint64(b[8:], file)
	le.PutUint64(b[16:], uint64(t.names.append([]byte(name))))
	le.PutUint32(b[24:], uint32(len(name)))
	// b[28:32] and the next entry: the head, in the low 32 bits here and the
	// rest below; entries are fewer than 2^32 in any image the format can hold.
	if head >= 1<<32 {
		return 0, fmt.Errorf("%w: more than 2^32 names", ErrTooLarge)
	}
	le.PutUint32(b[28:], uint32(head))
	if err := t.entries.put(e, b[:]); err != nil {
		return 0, err
	}
	if err := t.heads.putUint64(dirKey, e); err != nil {
		return 0, err
	}
	k := indexKey(dirKey, key)
	if _, err := t.index.put(&k, e<<8|uint64(flags), file|sub<<32, false); err != nil {
		return 0, err
	}
	return e, nil
}

func (t *spillTree) killEntry(e uint64) error {
	var b [8]byte
	if err := t.entries.getAt(e, 8, b[:]); err != nil {
		return err
	}
	v := binary.LittleEndian.Uint64(b[:]) | entryDead
	binary.LittleEndian.PutUint64(b[:], v)
	return t.entries.putAt(e, 8, b[:])
}

// unlink removes name key from directory dirKey.
func (t *spillTree) unlink(dirKey uint64, key string, old ixEntry) error {
	if err := t.killEntry(old.entry); err != nil {
		return err
	}
	k := indexKey(dirKey, key)
	return t.index.remove(&k)
}

// child is one live name of a directory, read back at Close.
type child struct {
	name, key string
	file      uint64
}

// children returns the live names of directory dirKey in link table order.
func (t *spillTree) children(dirKey uint64, upcase []uint16) ([]child, error) {
	e, err := t.heads.getUint64(dirKey)
	if err != nil {
		return nil, err
	}
	if err := t.names.flush(); err != nil {
		return nil, err
	}
	var cs []child
	le := binary.LittleEndian
	var b [entryRecSize]byte
	for e != 0 {
		if err := t.entries.get(e, b[:]); err != nil {
			return nil, err
		}
		e = uint64(le.Uint32(b[28:]))
		file := le.Uint64(b[8:])
		if file&entryDead != 0 {
			continue
		}
		nb := make([]byte, le.Uint32(b[24:]))
		if err := t.names.readAt(nb, int64(le.Uint64(b[16:]))); err != nil {
			return nil, err
		}
		name := string(nb)
		cs = append(cs, child{name: name, key: string(nameKey(upcase, name)), file: file})
	}
	// Keys are UTF-8, whose byte order is code point order: the §10.3 order.
	sortChildren(cs)
	return cs, nil
}

func sortChildren(cs []child) {
	slices.SortFunc(cs, func(a, b child) int { return strings.Compare(a.key, b.key) })
}
