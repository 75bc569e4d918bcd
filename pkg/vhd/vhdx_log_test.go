package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// pendingLogDisk makes a dynamic VHDX whose log holds updates not yet in place,
// as a writer that crashed after logging them leaves it (reference c.6, c.10):
// a BAT entry that maps block 2 to a block written beyond the old end of the
// file, and a zero sector in block 0. It returns the path and the virtual disk
// the log describes.
func pendingLogDisk(t testing.TB, dir string, lss uint32) (string, []byte) {
	t.Helper()
	p := filepath.Join(dir, "pending.vhdx")
	const size, bs = 8 << 20, 1 << 20
	if err := CreateVHDX(p, VHDXCreateOptions{Size: size, BlockSize: bs, LogicalSectorSize: lss}); err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	for i := range 2 * bs {
		model[i] = byte(i/4096) + 1
	}
	d, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(model[:2*bs], 0); err != nil {
		t.Fatal(err)
	}
	x := d.vhdx
	blockOff := x.nextBlock
	block0 := int64(x.bat[0]>>20) << 20
	batOff := x.batOff
	d.Close()

	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pattern := bytes.Repeat([]byte{0xB7}, bs)
	if _, err := f.WriteAt(pattern, blockOff); err != nil {
		t.Fatal(err)
	}
	copy(model[2*bs:], pattern)
	clear(model[8192:12288])
	batSector := make([]byte, 4096)
	if _, err := f.ReadAt(batSector, batOff); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(batSector[16:], uint64(blockOff)|VHDXBlockFullyPresent)
	info, err := ReadVHDXInfo(f)
	if err != nil {
		t.Fatal(err)
	}
	writes := []vhdxLogWrite{{batOff, batSector}, {block0 + 8192, make([]byte, 4096)}}
	if err := logged(f, info, writes, true); err != nil {
		t.Fatal(err)
	}
	return p, model
}

// TestVHDXLogReplay: a read-only open refuses a pending log and changes
// nothing; qemu-img check -r all and a writable open here replay it to the same
// disk, which qemu then checks clean.
func TestVHDXLogReplay(t *testing.T) {
	requireQemu(t)
	dir := t.TempDir()
	p, model := pendingLogDisk(t, dir, 512)
	before := fileSHA(t, p)
	if _, err := Open(p, true); !errors.Is(err, ErrLogReplayNeeded) {
		t.Fatalf("read-only open of a pending log: %v", err)
	}
	if fileSHA(t, p) != before {
		t.Fatal("read-only open modified the file")
	}
	// qemu agrees that the log is valid and needs replaying.
	if out, err := exec.Command("qemu-img", "info", p).CombinedOutput(); err == nil || !bytes.Contains(out, []byte("log that needs to be replayed")) {
		t.Fatalf("qemu-img info on the pending log: %v\n%s", err, out)
	}
	info, err := ReadVHDXInfo(mustOpen(t, p))
	if err != nil || info.Header.LogGUID == (guid.GUID{}) {
		t.Fatalf("ReadVHDXInfo: %v, log GUID %v", err, info.Header.LogGUID)
	}

	theirs := filepath.Join(dir, "qemu.vhdx")
	run(t, "cp", "--sparse=always", p, theirs)
	run(t, "qemu-img", "check", "-r", "all", theirs)
	if got := qemuVHDXRaw(t, theirs); !bytes.Equal(got, model) {
		t.Fatalf("qemu's replay differs from the logged disk at %d", firstDiff(got, model))
	}

	d, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("replay differs at %d", firstDiff(got, model))
	}
	if h := d.VHDXInfo().Header; h.LogGUID != (guid.GUID{}) {
		t.Errorf("log GUID %v after replay", h.LogGUID)
	}
	d.Close()
	run(t, "qemu-img", "check", p)
	if got := qemuVHDXRaw(t, p); !bytes.Equal(got, model) {
		t.Fatalf("qemu reads our replay differently at %d", firstDiff(got, model))
	}
	// Both replays give the same file contents where it matters: the BAT and data.
	d, err = Open(theirs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := readAll(t, d); !bytes.Equal(got, model) {
		t.Fatalf("reading qemu's replay differs at %d", firstDiff(got, model))
	}
}

// TestVHDXLogReplay4K replays a pending log of a 4096-byte-sector disk, which
// qemu cannot open; 7-Zip refuses the file before replay and reads it after.
func TestVHDXLogReplay4K(t *testing.T) {
	requireTool(t, "7zz", "7zip")
	dir := t.TempDir()
	p, model := pendingLogDisk(t, dir, 4096)
	if out, err := exec.Command("7zz", "t", "-tVHDX", p).CombinedOutput(); err == nil && !bytes.Contains(out, []byte("LOG")) {
		t.Errorf("7zz accepted the pending log:\n%s", out)
	}
	d, err := Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	sevenZipTest(t, dir, "pending.vhdx", "VHDX")
	if got := sevenZipVHDXIn(t, dir, "pending.vhdx"); !bytes.Equal(got, model) {
		t.Fatalf("7zz reads the replayed disk differently at %d", firstDiff(got, model))
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestVHDXLogSequence builds a log by hand: an old entry, then a sequence of two
// entries of which the second wraps around the end of the circular buffer, plus
// an entry with another log GUID and one with a bad checksum. Only the active
// sequence is returned, oldest first.
func TestVHDXLogSequence(t *testing.T) {
	const n = 64 << 10
	g := guid.GUID{Data1: 7}
	log := make([]byte, n)
	put := func(pos int64, e []byte) {
		for i := range e {
			log[(pos+int64(i))%n] = e[i]
		}
	}
	entry := func(seq uint64, pos, tail int64, g guid.GUID, sectors int) []byte {
		data := make([]byte, 4096*sectors)
		for i := range data {
			data[i] = byte(seq) + byte(i/4096) + 1
		}
		e, err := marshalLogEntry([]vhdxLogWrite{{int64(seq) << 20, data}}, seq, g, tail, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		put(pos, e)
		return e
	}
	entry(3, 0, 0, g, 1)            // old, 8 KiB
	entry(10, 40<<10, 40<<10, g, 3) // 16 KiB, at 40 KiB
	entry(11, 56<<10, 40<<10, g, 2) // 12 KiB from 56 KiB: wraps to 4 KiB
	entry(12, 16<<10, 16<<10, guid.GUID{Data1: 8}, 1)
	entry(13, 28<<10, 28<<10, g, 1)
	log[28<<10+100]++
	h := VHDXHeader{LogGUID: g, LogOffset: 1 << 20, LogLength: n}
	f := filepath.Join(t.TempDir(), "log")
	file := make([]byte, 1<<20+n)
	copy(file[1<<20:], log)
	if err := os.WriteFile(f, file, 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := ReadVHDXLog(bytes.NewReader(file), h, int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].SequenceNumber != 10 || entries[1].SequenceNumber != 11 {
		var seqs []uint64
		for _, e := range entries {
			seqs = append(seqs, e.SequenceNumber)
		}
		t.Fatalf("active sequence %v, want [10 11]", seqs)
	}
	if len(entries[0].Descriptors) != 3 || entries[0].Descriptors[1].FileOffset != 10<<20+4096 || entries[0].Descriptors[1].Data[0] != 12 {
		t.Errorf("entry 10: %+v", entries[0].Descriptors[1].FileOffset)
	}
	if got := entries[1].Descriptors[1].Data; got[0] != 13 || got[4095] != 13 {
		t.Errorf("wrapped entry's data % x", got[:8])
	}
	// A corrupt checksum is a typed error naming the entry.
	_, err = ParseVHDXLogEntry(log, 28<<10, g, 1<<20)
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrChecksum) || fe.Offset != 1<<20+28<<10+4 {
		t.Errorf("bad checksum: %v", err)
	}
}
