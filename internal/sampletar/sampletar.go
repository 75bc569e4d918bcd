// Package sampletar generates OCI Windows layer tars for tests, the demo and the
// benchmarks: deterministic for a seed, in the entry order Windows producers use, and
// using every kind of Windows metadata the format carries — security descriptors,
// attributes, 100 ns times, extended attributes, alternate data streams, sparse files,
// symbolic links, mount points, hard links, files without a data stream, Hives/,
// UtilityVM/Files/ and whiteouts.
package sampletar

import (
	"archive/tar"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options shapes a generated layer.
type Options struct {
	Seed       uint64
	Files      int   // regular files under Files/ (approximate)
	Bytes      int64 // total bytes of file data (approximate)
	PerDir     int   // files per directory (default 64)
	UtilityVM  bool  // add UtilityVM/Files with hard links into Files/
	Whiteouts  []string
	Hives      bool // add Hives/ with delta hives
	LargeFiles int  // how many of the files are large (each Bytes/8/LargeFiles)
	Unicode    bool // include non-ASCII names
}

// Entry is one tar entry as generated, for tests that compare.
type entry struct {
	hdr     *tar.Header
	size    int64
	seed    uint64
	streams []stream
}

type stream struct {
	name string
	size int64
	seed uint64
}

// SecurityDescriptors are the self-relative descriptors used by generated entries:
// O:BAG:SYD:PAI(A;OICIIO;GA;;;CO)(A;;FA;;;SY)(A;;0x1200a9;;;BU) and variants.
var SecurityDescriptors = [][]byte{
	sd(sidBA, sidSY, []ace{{0, 0x0b, 0x10000000, sidCO}, {0, 0, 0x1f01ff, sidSY}, {0, 0, 0x1200a9, sidBU}}),
	sd(sidSY, sidSY, []ace{{0, 0, 0x1f01ff, sidSY}, {0, 0, 0x1f01ff, sidBA}}),
	sd(sidBA, sidBA, []ace{{0, 0x03, 0x1f01ff, sidBA}, {0, 0x03, 0x1200a9, sidBU}, {1, 0, 0x40000, sidWD}}),
}

var (
	sidSY = sid(5, 18)
	sidBA = sid(5, 32, 544)
	sidBU = sid(5, 32, 545)
	sidCO = sid(3, 0)
	sidWD = sid(1, 0)
)

func sid(auth byte, subs ...uint32) []byte {
	b := []byte{1, byte(len(subs)), 0, 0, 0, 0, 0, auth}
	for _, s := range subs {
		b = append(b, byte(s), byte(s>>8), byte(s>>16), byte(s>>24))
	}
	return b
}

type ace struct {
	typ, flags byte
	mask       uint32
	sid        []byte
}

func le16(b []byte, v int) { b[0], b[1] = byte(v), byte(v>>8) }
func le32(b []byte, v int) { b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }

// sd builds a self-relative descriptor with owner, group and a protected DACL.
func sd(owner, group []byte, aces []ace) []byte {
	var acl []byte
	for _, a := range aces {
		n := 8 + len(a.sid)
		b := make([]byte, 8, n)
		b[0], b[1] = a.typ, a.flags
		le16(b[2:], n)
		le32(b[4:], int(a.mask))
		acl = append(acl, append(b, a.sid...)...)
	}
	hdr := make([]byte, 8)
	hdr[0] = 2
	le16(hdr[2:], 8+len(acl))
	le16(hdr[4:], len(aces))
	acl = append(hdr, acl...)
	out := make([]byte, 20)
	out[0] = 1
	le16(out[2:], 0x8000|0x1000|0x0400|0x0004) // SELF_RELATIVE|DACL_PROTECTED|DACL_AUTO_INHERITED|DACL_PRESENT
	le32(out[4:], 20)
	le32(out[8:], 20+len(owner))
	le32(out[16:], 20+len(owner)+len(group))
	out = append(out, owner...)
	out = append(out, group...)
	return append(out, acl...)
}

func formatTime(t time.Time) string {
	secs, nsecs := t.Unix(), t.Nanosecond()
	if nsecs == 0 {
		return strconv.FormatInt(secs, 10)
	}
	return strings.TrimRight(fmt.Sprintf("%d.%09d", secs, nsecs), "0")
}

// Write generates a layer tar into w.
func Write(w io.Writer, o Options) error {
	if o.PerDir <= 0 {
		o.PerDir = 64
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	epoch := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	when := func() time.Time {
		// Times with 100 ns resolution, as Windows keeps them.
		return epoch.Add(time.Duration(rng.Int64N(int64(365*24*time.Hour))) / 100 * 100)
	}
	var ents []*entry
	meta := func(name string, typ byte, attr uint32, sdIdx int) *tar.Header {
		mt := when()
		h := &tar.Header{
			Name: name, Typeflag: typ, ModTime: mt, AccessTime: mt.Add(time.Hour), ChangeTime: mt.Add(2 * time.Hour),
			Format: tar.FormatPAX,
			PAXRecords: map[string]string{
				"MSWINDOWS.fileattr":      strconv.FormatUint(uint64(attr), 10),
				"LIBARCHIVE.creationtime": formatTime(mt.Add(-time.Hour)),
			},
		}
		if sdIdx >= 0 {
			h.PAXRecords["MSWINDOWS.rawsd"] = base64.StdEncoding.EncodeToString(SecurityDescriptors[sdIdx])
		}
		return h
	}
	dir := func(name string) {
		h := meta(name, tar.TypeDir, 0x10, rng.IntN(len(SecurityDescriptors)))
		h.Mode = 0o40000
		ents = append(ents, &entry{hdr: h})
	}
	file := func(name string, size int64, attr uint32) *entry {
		h := meta(name, tar.TypeReg, attr, rng.IntN(len(SecurityDescriptors)))
		h.Mode = 0o100000
		h.Size = size
		e := &entry{hdr: h, size: size, seed: rng.Uint64()}
		ents = append(ents, e)
		return e
	}

	dir("Files")
	nfiles := max(o.Files, 1)
	large := min(o.LargeFiles, nfiles)
	var largeSize, smallMean int64
	if large > 0 {
		largeSize = o.Bytes / 8 / int64(large)
	}
	if n := nfiles - large; n > 0 {
		smallMean = max((o.Bytes-largeSize*int64(large))/int64(n), 0)
	}
	var linkTargets []*tar.Header
	ndirs := (nfiles + o.PerDir - 1) / o.PerDir
	for d := 0; d < ndirs; d++ {
		dname := fmt.Sprintf("Files/Windows/System32/d%04d", d)
		if d == 0 {
			dir("Files/Windows")
			dir("Files/Windows/System32")
		}
		dir(dname)
		for i := 0; i < o.PerDir && d*o.PerDir+i < nfiles; i++ {
			n := d*o.PerDir + i
			var size int64
			if n < large {
				size = largeSize
			} else if smallMean > 0 {
				size = rng.Int64N(2*smallMean + 1)
			}
			attr := uint32(0x20)
			switch n % 7 {
			case 3:
				attr |= 0x2000 // NOT_CONTENT_INDEXED
			case 5:
				attr = 0x1 | 0x2 | 0x4 | 0x20
			}
			e := file(fmt.Sprintf("%s/f%05d.dll", dname, n), size, attr)
			if n%11 == 0 {
				e.hdr.PAXRecords["MSWINDOWS.xattr.$KERNEL.PURGE.ESBCACHE"] = base64.StdEncoding.EncodeToString([]byte{byte(n), 1, 2, 3, 4, 5})
				e.hdr.PAXRecords["MSWINDOWS.xattr.USER.NOTE"] = base64.StdEncoding.EncodeToString([]byte("note " + strconv.Itoa(n)))
			}
			if n%50 == 1 {
				e.streams = append(e.streams, stream{name: "Zone.Identifier", size: 26 + int64(n%5), seed: rng.Uint64()})
			}
			if n%200 == 7 {
				linkTargets = append(linkTargets, e.hdr)
			}
		}
	}
	// Special objects, in their own directory so they sort after the data.
	dir("Files/special")
	e := file("Files/special/empty-no-data", 0, 0x20)
	e.hdr.Mode = 0 // backed up without a DATA stream
	file("Files/special/empty-with-data", 0, 0x20)
	sp := file("Files/special/sparse.bin", 3<<20, 0x20|0x200)
	sp.seed = 0 // marks a file with zero runs; see content
	ads := file("Files/special/streams.txt", 100, 0x20)
	ads.streams = []stream{{name: "a", size: 10, seed: 1}, {name: "big", size: 300 << 10, seed: 2}, {name: "empty", size: 0}}
	h := meta("Files/special/symlink-file", tar.TypeSymlink, 0x20|0x400, 0)
	h.Mode = 0o120000
	h.Linkname = `..\Windows\System32\d0000\f00000.dll`
	ents = append(ents, &entry{hdr: h})
	h = meta("Files/special/symlink-dir", tar.TypeSymlink, 0x10|0x400, 1)
	h.Mode = 0o160000
	h.Linkname = `..\Windows`
	ents = append(ents, &entry{hdr: h})
	h = meta("Files/special/junction", tar.TypeSymlink, 0x10|0x400, 1)
	h.Mode = 0o160000
	h.Linkname = `C:\ProgramData`
	h.PAXRecords["MSWINDOWS.mountpoint"] = "1"
	ents = append(ents, &entry{hdr: h})
	if o.Unicode {
		file("Files/special/Ünïcödé – файл – 文件.txt", 33, 0x20)
		file("Files/special/"+strings.Repeat("long-name-", 20)+".txt", 12, 0x20)
	}
	dir("Files/special/zlinks")
	for i, t := range linkTargets {
		ents = append(ents, &entry{hdr: linkHeader(fmt.Sprintf("Files/special/zlinks/link%03d.dll", i), t)})
	}
	if o.Hives {
		dir("Hives")
		for _, hv := range []string{"DefaultUser_Delta", "Sam_Delta", "Security_Delta", "Software_Delta", "System_Delta"} {
			hh := file("Hives/"+hv, 8192+int64(rng.IntN(8192)), 0x20)
			delete(hh.hdr.PAXRecords, "MSWINDOWS.rawsd")
		}
	}
	if o.UtilityVM {
		dir("UtilityVM")
		dir("UtilityVM/Files")
		dir("UtilityVM/Files/EFI")
		file("UtilityVM/Files/EFI/BCD", 4096, 0x20|0x2)
		for i, t := range linkTargets {
			ents = append(ents, &entry{hdr: linkHeader(fmt.Sprintf("UtilityVM/Files/l%03d.dll", i), t)})
		}
	}
	for _, wo := range o.Whiteouts {
		i := strings.LastIndexByte(wo, '/')
		ents = append(ents, &entry{hdr: &tar.Header{Name: wo[:i] + "/.wh." + wo[i+1:], Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}})
	}
	sortEntries(ents)

	tw := tar.NewWriter(w)
	buf := make([]byte, 1<<20)
	for _, e := range ents {
		if err := tw.WriteHeader(e.hdr); err != nil {
			return err
		}
		if err := writeContent(tw, e.hdr.Name, e.size, e.seed, buf); err != nil {
			return err
		}
		for _, s := range e.streams {
			sh := &tar.Header{Name: e.hdr.Name + ":" + s.name, Typeflag: tar.TypeReg, Mode: e.hdr.Mode, Size: s.size,
				ModTime: e.hdr.ModTime, AccessTime: e.hdr.AccessTime, ChangeTime: e.hdr.ChangeTime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(sh); err != nil {
				return err
			}
			if err := writeContent(tw, sh.Name, s.size, s.seed, buf); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// linkHeader makes a hard-link entry to t. A hard link is one file, so its attributes
// and times are the target's; it carries no security descriptor.
func linkHeader(name string, t *tar.Header) *tar.Header {
	return &tar.Header{
		Name: name, Typeflag: tar.TypeLink, Linkname: t.Name, Mode: 0o644,
		ModTime: t.ModTime, AccessTime: t.AccessTime, ChangeTime: t.ChangeTime, Format: tar.FormatPAX,
		PAXRecords: map[string]string{
			"MSWINDOWS.fileattr":      t.PAXRecords["MSWINDOWS.fileattr"],
			"LIBARCHIVE.creationtime": t.PAXRecords["LIBARCHIVE.creationtime"],
		},
	}
}

// writeContent writes size pseudo-random bytes; seed 0 gives data with long zero runs
// (a sparse file's logical content).
func writeContent(w io.Writer, name string, size int64, seed uint64, buf []byte) error {
	rng := rand.New(rand.NewPCG(seed, uint64(len(name))))
	for off := int64(0); off < size; {
		n := int(min(int64(len(buf)), size-off))
		b := buf[:n]
		if seed == 0 {
			clear(b)
			if (off/int64(len(buf)))%3 == 1 {
				fillRandom(rng, b[:n/2])
			}
		} else {
			fillRandom(rng, b)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

func fillRandom(rng *rand.Rand, b []byte) {
	for len(b) >= 8 {
		v := rng.Uint64()
		b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// sortEntries puts entries in the order a Windows layer export uses: a directory, then
// the names it removes (by upper-cased name), then its children in byte-wise order.
func sortEntries(ents []*entry) {
	key := func(e *entry) []string {
		parts := strings.Split(e.hdr.Name, "/")
		last := parts[len(parts)-1]
		if strings.HasPrefix(last, ".wh.") {
			parts[len(parts)-1] = "\x00" + strings.ToUpper(last[4:])
		}
		return parts
	}
	slices.SortStableFunc(ents, func(a, b *entry) int { return slices.Compare(key(a), key(b)) })
}
