package vhd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// knownError reports whether err is of a class this package documents for bad
// input.
func knownError(err error) bool {
	for _, e := range []error{ErrInvalidFormat, ErrUnsupported, ErrParentNotFound, ErrParentMismatch, ErrLogReplayNeeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func FuzzParseVHDXHeader(f *testing.F) {
	h := &VHDXHeader{SequenceNumber: 9, Version: 1, LogOffset: 1 << 20, LogLength: 1 << 20, LogGUID: guid.GUID{Data1: 3}}
	b, _ := h.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseVHDXHeaderAt(b, 64<<10)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		out, _ := h.MarshalBinary()
		if !bytes.Equal(out[:80], b[:80]) {
			t.Fatalf("header does not re-encode to the same 80 bytes")
		}
	})
}

func FuzzParseVHDXRegionTable(f *testing.F) {
	rt := &VHDXRegionTable{Entries: []VHDXRegion{
		{GUID: VHDXRegionBAT, FileOffset: 3 << 20, Length: 1 << 20, Required: true},
		{GUID: VHDXRegionMetadata, FileOffset: 2 << 20, Length: 1 << 20, Required: true},
	}}
	b, _ := rt.MarshalBinary()
	f.Add(b[:512])
	f.Fuzz(func(t *testing.T, head []byte) {
		// The table is 64 KiB: the fuzzed bytes are its start, with the CRC made
		// right half of the time so that the checks after it are reached.
		b := make([]byte, VHDXRegionTableSize)
		copy(b, head)
		if len(head) > 0 && head[0]&1 == 0 {
			c := crc32c(b, 4)
			b[4], b[5], b[6], b[7] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		}
		t2, err := ParseVHDXRegionTableAt(b, vhdxRegionTable1Offset)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		out, err := t2.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseVHDXRegionTableAt(out, 0); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseVHDXParentLocator(f *testing.F) {
	l := &VHDXParentLocator{Type: VHDXParentLocatorType, Entries: []VHDXKeyValue{
		{VHDXKeyParentLinkage, "{0123abcd-0000-1111-2222-333344445555}"},
		{VHDXKeyRelativePath, `..\base.vhdx`},
		{VHDXKeyVolumePath, `\\?\Volume{0123abcd-0000-1111-2222-333344445555}\d\base.vhdx`},
		{VHDXKeyAbsoluteWin32Path, `C:\d\base.vhdx`},
	}}
	b, err := l.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseVHDXParentLocatorAt(b, 2<<20+64<<10)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		out, err := l.MarshalBinary()
		if err != nil {
			return // decoded strings can re-encode longer (replacement characters)
		}
		l2, err := ParseVHDXParentLocatorAt(out, 0)
		if err != nil || len(l2.Entries) != len(l.Entries) {
			t.Fatalf("round trip: %v", err)
		}
		_ = l.parentCandidates("/d/child.vhdx")
	})
}

func FuzzParseVHDXLogEntry(f *testing.F) {
	g := guid.GUID{Data1: 0x10C}
	data := bytes.Repeat([]byte{1, 2, 3, 4}, 1024)
	e, err := marshalLogEntry([]vhdxLogWrite{{3 << 20, data}, {4 << 20, make([]byte, 4096)}}, 5, g, 0, 1<<20, 8<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(e, uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, pos uint16) {
		log := make([]byte, 64<<10)
		p := int64(pos) % int64(len(log)) / 4096 * 4096
		for i := range min(len(b), len(log)) {
			log[(p+int64(i))%int64(len(log))] = b[i]
		}
		if _, err := ParseVHDXLogEntry(log, p, g, 1<<20); err != nil && !errors.Is(err, ErrInvalidFormat) {
			t.Fatalf("error class: %v", err)
		}
		file := make([]byte, 1<<20+len(log))
		copy(file[1<<20:], log)
		entries, err := ReadVHDXLog(bytes.NewReader(file), VHDXHeader{LogGUID: g, LogOffset: 1 << 20, LogLength: uint32(len(log))}, int64(len(file)))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(entries); i++ {
			if entries[i].SequenceNumber != entries[i-1].SequenceNumber+1 {
				t.Fatalf("sequence %d after %d", entries[i].SequenceNumber, entries[i-1].SequenceNumber)
			}
		}
	})
}

// FuzzOpenVHDXFile overwrites the metadata table and items, the BAT, and the
// log area of real files (a differencing child whose parent is found through
// its absolute path, and a dynamic disk with a pending log) with fuzzed bytes.
// A read-only open never changes the file and gives errors of this package's
// classes; a writable open replays or refuses; reads never panic.
func FuzzOpenVHDXFile(f *testing.F) {
	dir := f.TempDir()
	base := filepath.Join(dir, "base.vhdx")
	if err := CreateVHDX(base, VHDXCreateOptions{Size: 4 << 20, BlockSize: 1 << 20}); err != nil {
		f.Fatal(err)
	}
	child := filepath.Join(dir, "child.vhdx")
	if err := CreateVHDX(child, VHDXCreateOptions{Parent: base, BlockSize: 1 << 20}); err != nil {
		f.Fatal(err)
	}
	d, err := Open(child, false)
	if err != nil {
		f.Fatal(err)
	}
	for _, off := range []int64{100, 1<<20 + 4096, 3 << 20} {
		if _, err := d.WriteAt(bytes.Repeat([]byte{0xC7}, 5000), off); err != nil {
			f.Fatal(err)
		}
	}
	d.Close()
	templates := [][]byte{mustRead(f, child)}
	pending, _ := pendingLogDisk(f, dir, 512)
	templates = append(templates, mustRead(f, pending))
	const mdOff, batOff, logOff = 2 << 20, 3 << 20, 1 << 20
	for i, tpl := range templates {
		f.Add(uint8(i), tpl[mdOff:mdOff+512], tpl[mdOff+64<<10:mdOff+64<<10+512], tpl[batOff:batOff+64], tpl[logOff:logOff+8192])
	}
	f.Fuzz(func(t *testing.T, which uint8, table, items, bat, log []byte) {
		b := bytes.Clone(templates[int(which)%len(templates)])
		copy(b[mdOff:mdOff+64<<10], table)
		copy(b[mdOff+64<<10:batOff], items)
		copy(b[batOff:batOff+1<<20], bat)
		copy(b[logOff:logOff+1<<20], log)
		p := filepath.Join(t.TempDir(), "fuzz.vhdx")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		d, err := Open(p, true)
		if err == nil {
			buf := make([]byte, 4096)
			for off := int64(0); off < min(d.Size(), 64<<20); off += 1 << 20 {
				if _, err := d.ReadAt(buf, off); err != nil && err != io.EOF && !errors.Is(err, ErrInvalidFormat) {
					t.Fatalf("ReadAt(%d): %v", off, err)
				}
			}
			d.Close()
		} else if !knownError(err) {
			t.Fatalf("read-only open: unexpected error class: %v", err)
		}
		if after := mustReadT(t, p); sha256.Sum256(after) != sum {
			t.Fatal("read-only open modified the file")
		}
		w, err := Open(p, false)
		if err != nil {
			if !knownError(err) {
				t.Fatalf("writable open: unexpected error class: %v", err)
			}
			return
		}
		if _, err := w.WriteAt([]byte("fuzz"), 0); err != nil && !errors.Is(err, ErrInvalidFormat) {
			t.Fatalf("WriteAt: %v", err)
		}
		w.Close()
	})
}

func mustRead(f *testing.F, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func mustReadT(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
