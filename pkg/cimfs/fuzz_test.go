package cimfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

// sampleImage is a real image written by the writer (a fork of the sample layer),
// loaded into memory: the seed of the fuzz targets.
type sampleImageFiles struct {
	files    fstest.MapFS
	cim      string // name of the fork's .cim file
	meta     string // name of the fork's metadata region
	baseMeta string
}

var sampleOnce sync.Once
var sample sampleImageFiles

func loadSample(t testing.TB) sampleImageFiles {
	sampleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cimfs-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		build(t, dir, "base.cim", "", sampleFiles(t))
		build(t, dir, "child.cim", "base.cim", []testFile{
			{h: Header{Name: "Files/Windows/new.txt", Info: info(0, 20)}, data: []byte("new")},
			{h: Header{Name: "Files/Windows/big.bin"}, remove: true},
		})
		sample.files = fstest.MapFS{}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			sample.files[e.Name()] = &fstest.MapFile{Data: b}
		}
		sample.cim = "child.cim"
		cb, _ := os.ReadFile(filepath.Join(dir, "child.cim"))
		h, err := parseFSHeader(cb, "child.cim")
		if err != nil {
			t.Fatal(err)
		}
		sample.meta = h.own.regionName(0)
		sample.baseMeta = h.parents[0].regionName(0)
	})
	return sample
}

// withFile returns a copy of the sample with one file replaced.
func (s sampleImageFiles) withFile(name string, data []byte) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range s.files {
		m[k] = v
	}
	m[name] = &fstest.MapFile{Data: data}
	return m
}

// exercise uses every reader entry point on a possibly corrupt image. It must not
// panic or hang; errors are expected.
func exercise(t testing.TB, fsys fstest.MapFS, cim string, lookups ...string) {
	im, err := OpenFS(fsys, cim)
	if err != nil {
		checkErr(t, err)
		return
	}
	defer im.Close()
	checkErr(t, im.Verify())
	im.Removals()
	seen := map[FileID]bool{}
	var walk func(id FileID, depth int)
	buf := make([]byte, 4096)
	walk = func(id FileID, depth int) {
		if seen[id] || depth > 64 {
			return
		}
		seen[id] = true
		fi, err := im.StatID(id)
		if err != nil {
			checkErr(t, err)
			return
		}
		fi.SecurityDescriptor()
		fi.ExtendedAttributes()
		fi.ReparseData()
		for _, s := range fi.Streams {
			if f, err := im.OpenStreamID(id, s.Name); err == nil {
				f.ReadAt(buf, 0)
			}
		}
		if !fi.IsDir() {
			if f, err := im.OpenID(id); err == nil {
				f.ReadAt(buf, 0)
				f.ReadAt(buf, max(0, f.Size()-100))
			} else {
				checkErr(t, err)
			}
			return
		}
		ents, err := im.ReadDirID(id)
		if err != nil {
			checkErr(t, err)
			return
		}
		for _, e := range ents {
			im.LookupIn(id, e.Name)
			walk(e.ID, depth+1)
		}
	}
	walk(im.Root(), 0)
	for _, p := range lookups {
		if _, err := im.Lookup(p); err != nil {
			checkErr(t, err)
		}
		if f, err := im.Open(p); err == nil {
			io.Copy(io.Discard, io.LimitReader(f, 1<<20))
		}
	}
}

// checkErr fails on errors that are neither format errors nor lookups that found
// nothing: a corrupt image must say so with a *FormatError.
func checkErr(t testing.TB, err error) {
	var fe *FormatError
	if err == nil || errors.As(err, &fe) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotDir) ||
		errors.Is(err, ErrIsDir) || errors.Is(err, ErrInvalidName) {
		return
	}
	t.Fatalf("unexpected error class: %v", err)
}

func TestCorruption(t *testing.T) {
	s := loadSample(t)
	for _, name := range []string{s.cim, s.meta, s.baseMeta} {
		orig := s.files[name].Data
		// Truncations.
		for _, n := range []int{0, 7, 31, 40, 71, 100, len(orig) / 2, len(orig) - 1} {
			if n > len(orig) {
				continue
			}
			exercise(t, s.withFile(name, orig[:n]), s.cim)
		}
		// Single-byte corruption at many places must be caught by Verify or be
		// harmless; it must never panic.
		step := max(1, len(orig)/400)
		caught := 0
		for off := 0; off < len(orig); off += step {
			b := append([]byte(nil), orig...)
			b[off] ^= 0xA5
			fsys := s.withFile(name, b)
			exercise(t, fsys, s.cim, "Files/Windows/small.txt", "files/windows/NEW.TXT")
			im, err := OpenFS(fsys, s.cim)
			if err == nil {
				err = im.Verify()
				im.Close()
			}
			if err != nil {
				caught++
			}
		}
		t.Logf("%s: %d of %d corruptions detected", name, caught, (len(orig)+step-1)/step)
	}
	// The untouched sample verifies.
	im, err := OpenFS(s.files, s.cim)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := im.Verify(); err != nil {
		t.Fatal(err)
	}
	var fe *FormatError
	b := append([]byte(nil), s.files[s.cim].Data...)
	copy(b, "cimfileX")
	if _, err := OpenFS(s.withFile(s.cim, b), s.cim); !errors.As(err, &fe) || fe.Offset != 0 || fe.File != s.cim {
		t.Errorf("bad magic: %v", err)
	}
}

func FuzzImageMetadata(f *testing.F) {
	s := loadSample(f)
	f.Add(s.files[s.meta].Data)
	f.Fuzz(func(t *testing.T, b []byte) {
		exercise(t, s.withFile(s.meta, b), s.cim, "Files/Windows/small.txt")
	})
}

func FuzzFilesystemFile(f *testing.F) {
	s := loadSample(f)
	f.Add(s.files[s.cim].Data)
	f.Fuzz(func(t *testing.T, b []byte) {
		parseFSHeader(b, "x.cim")
		exercise(t, s.withFile(s.cim, b), s.cim)
	})
}

func FuzzRegionHeader(f *testing.F) {
	s := loadSample(f)
	f.Add(s.files[s.meta].Data[:regionHeaderSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		parseRegionHeader(b, "r")
	})
}

func FuzzObjectIDFile(f *testing.F) {
	s := loadSample(f)
	for name, mf := range s.files {
		if strings.HasPrefix(name, "objectid_") {
			f.Add(mf.Data, int64(1<<20))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		es, err := parseObjectIDFile(b, "o", 0, size)
		if err != nil {
			checkErr(t, err)
			return
		}
		for _, e := range es {
			if e.offset <= 0 || e.offset+int64(e.id.length) > size {
				t.Fatalf("entry outside the region: %+v", e)
			}
		}
	})
}

func FuzzLinkTable(f *testing.F) {
	f.Add(encodeLinkTable([]string{"A", "b", "Ünï"}, make([]byte, 12), 4), "b", true)
	f.Add(encodeLinkTable([]string{"s1", "s2"}, make([]byte, 32), streamSize), "S2", false)
	t16 := upcaseTable()
	f.Fuzz(func(t *testing.T, b []byte, name string, dir bool) {
		vs := streamSize
		if dir {
			vs = 4
		}
		if checkLinkTable(b, vs) != nil {
			return
		}
		n := linkCount(b)
		for i := 0; i < n; i++ {
			if _, err := linkName(b, n, vs, i); err != nil {
				t.Fatal(err)
			}
		}
		searchLinks(t16, b, vs, name)
	})
}

func FuzzRecord(f *testing.F) {
	s := loadSample(f)
	im, err := OpenFS(s.files, s.cim)
	if err != nil {
		f.Fatal(err)
	}
	defer im.Close()
	for id := FileID(1); id < 8; id++ {
		e := im.ftd[0]
		b, _ := im.read(e.offset+regionOffset(int64(id-1)*recordSize), recordSize, "r")
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := parseRecord(b)
		r.basicInfo()
		var out [recordSize]byte
		r.encode(out[:])
		if parseRecord(out[:]) != r {
			t.Fatalf("record does not round-trip")
		}
		// The record in place of file 2 of a real image.
		meta := append([]byte(nil), s.files[s.meta].Data...)
		off := im.ftd[0].offset.offset() + recordSize
		copy(meta[off:off+recordSize], append(b, make([]byte, recordSize)...)[:recordSize])
		exercise(t, s.withFile(s.meta, meta), s.cim)
	})
}

func FuzzRemovals(f *testing.F) {
	f.Add(encodeRemovals([]string{`Files\a`, `Files\b\c`}, nil))
	f.Add(encodeRemovals([]string{`Files\a`}, [][2]string{{`Files\l`, `Files\t`}}))
	f.Add(encodeRemovals(nil, [][2]string{{`Files\l`, `Files\t`}, {`Files\m`, `Files\u`}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		bad := func(off int64, format string, a ...any) error {
			return formatErr("x", "removal list", off, format, a...)
		}
		rms, end, err := parsePathList(b, 0, 1, bad)
		if err != nil {
			return
		}
		// What was read encodes to bytes that read back the same (UTF-16 that
		// does not decode, such as lone surrogates, is replaced once).
		again, _, err := parsePathList(encodeRemovals(rms, nil), 0, 1, bad)
		if err != nil || !slices.Equal(again, rms) {
			t.Fatalf("removals %q read back as %q, %v", rms, again, err)
		}
		if end == len(b) {
			return
		}
		flat, end2, err := parsePathList(b, end, 2, bad)
		if err != nil || end2 != len(b) {
			return
		}
		var links [][2]string
		for i := 0; i+1 < len(flat); i += 2 {
			links = append(links, [2]string{flat[i], flat[i+1]})
		}
		enc := encodeRemovals(rms, links)
		_, e1, _ := parsePathList(enc, 0, 1, bad)
		if len(links) > 0 {
			flat2, _, err := parsePathList(enc, e1, 2, bad)
			if err != nil || !slices.Equal(flat2, flat) {
				t.Fatalf("links %q read back as %q, %v", flat, flat2, err)
			}
		}
	})
}

func FuzzLookup(f *testing.F) {
	s := loadSample(f)
	im, err := OpenFS(s.files, s.cim)
	if err != nil {
		f.Fatal(err)
	}
	defer im.Close()
	for _, p := range []string{"Files/Windows/small.txt", `FILES\WINDOWS\Small.TXT:zone.identifier`, "Files/Ünïcödé ß 😀", "a/../b", "//", ""} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		id, err := im.Lookup(p)
		if err != nil {
			checkErr(t, err)
			return
		}
		if _, err := im.StatID(id); err != nil {
			t.Fatal(err)
		}
		im.Open(p)
	})
}

// FuzzStream puts arbitrary Stream values (offset, length, type, sparse bit) into the
// default stream of every file record of a real image and reads them.
func FuzzStream(f *testing.F) {
	s := loadSample(f)
	im, err := OpenFS(s.files, s.cim)
	if err != nil {
		f.Fatal(err)
	}
	defer im.Close()
	tab := im.ftd[0]
	for id := 1; id <= int(tab.count); id++ {
		rec, _ := im.record(FileID(id))
		var b [streamSize]byte
		rec.data.put(b[:])
		f.Add(b[:], uint16(id))
	}
	f.Fuzz(func(t *testing.T, b []byte, id uint16) {
		if len(b) < streamSize {
			return
		}
		st := getStream(b)
		var back [streamSize]byte
		st.put(back[:])
		if getStream(back[:]) != st {
			t.Fatal("stream does not round-trip")
		}
		slot := int(id) % int(tab.count)
		meta := append([]byte(nil), s.files[s.meta].Data...)
		off := tab.offset.offset() + int64(slot)*recordSize + 40
		copy(meta[off:off+streamSize], b)
		exercise(t, s.withFile(s.meta, meta), s.cim)
	})
}
