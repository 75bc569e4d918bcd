package vhd

// The VHDX log ([MS-VHDX] §2.3): a circular buffer of 4 KiB sectors holding
// entries of data and zero descriptors. Each entry records writes to the file's
// metadata (region tables, metadata region, BAT, sector bitmaps) before they are
// made in place; after a crash the active sequence of entries is replayed.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

const (
	vhdxLogSector         = 4096
	vhdxLogEntryHeader    = 64
	vhdxLogDescSize       = 32
	vhdxLogEntrySignature = "loge"
	vhdxLogDataSignature  = "data"
	vhdxLogDescData       = "desc"
	vhdxLogDescZero       = "zero"
	// vhdxMaxLogLength bounds the log read into memory for replay.
	vhdxMaxLogLength = 256 << 20
)

// VHDXLogEntry is a valid entry of a VHDX log.
type VHDXLogEntry struct {
	// Position is the entry's offset inside the log.
	Position          int64
	Length            uint32
	Tail              uint32
	SequenceNumber    uint64
	LogGUID           guid.GUID
	FlushedFileOffset uint64
	LastFileOffset    uint64
	Descriptors       []VHDXLogDescriptor
}

// VHDXLogDescriptor is one write of a log entry: 4096 bytes of Data at
// FileOffset, or ZeroLength zero bytes there when Data is nil.
type VHDXLogDescriptor struct {
	FileOffset int64
	ZeroLength int64
	Data       []byte
}

// ParseVHDXLogEntry decodes the log entry at position pos of log (the whole log
// area, a circular buffer) and checks everything the specification requires of a
// valid entry: signature, CRC-32C over its length, sequence numbers of the
// descriptors and data sectors, 4 KiB alignment, and the log GUID. base is the
// file offset of the log, for errors.
func ParseVHDXLogEntry(log []byte, pos int64, logGUID guid.GUID, base int64) (*VHDXLogEntry, error) {
	const s = "VHDX log entry"
	n := int64(len(log))
	if n == 0 || n%vhdxLogSector != 0 || pos < 0 || pos >= n || pos%vhdxLogSector != 0 {
		return nil, formatErrf(s, base+pos, "position %d in a log of %d bytes", pos, n)
	}
	sector := func(i int64) []byte { // i-th sector of the entry, wrapping
		o := (pos + i*vhdxLogSector) % n
		return log[o : o+vhdxLogSector]
	}
	le := binary.LittleEndian
	h := sector(0)
	if string(h[:4]) != vhdxLogEntrySignature {
		return nil, formatErrf(s, base+pos, "signature %q", h[:4])
	}
	e := &VHDXLogEntry{
		Position:          pos,
		Length:            le.Uint32(h[8:]),
		Tail:              le.Uint32(h[12:]),
		SequenceNumber:    le.Uint64(h[16:]),
		LogGUID:           winGUID(h[32:]),
		FlushedFileOffset: le.Uint64(h[48:]),
		LastFileOffset:    le.Uint64(h[56:]),
	}
	count := int64(le.Uint32(h[24:]))
	switch {
	case e.Length == 0 || e.Length%vhdxLogSector != 0 || int64(e.Length) > n:
		return nil, formatErrf(s, base+pos+8, "entry length %d in a log of %d bytes", e.Length, n)
	case e.Tail%vhdxLogSector != 0 || int64(e.Tail) >= n:
		return nil, formatErrf(s, base+pos+12, "tail %d", e.Tail)
	case e.SequenceNumber == 0:
		return nil, formatErrf(s, base+pos+16, "sequence number 0")
	case e.LogGUID != logGUID:
		return nil, formatErrf(s, base+pos+32, "log GUID %v, the header's is %v", e.LogGUID, logGUID)
	}
	sectors := int64(e.Length) / vhdxLogSector
	descSectors := (count + 2 + 127) / 128
	if descSectors > sectors {
		return nil, formatErrf(s, base+pos+24, "%d descriptors do not fit in %d bytes", count, e.Length)
	}
	// CRC-32C over the entry with the checksum field zeroed.
	crc := uint32(0)
	for i := range sectors {
		b := sector(i)
		if i == 0 {
			crc = crc32c(b, 4)
			continue
		}
		crc = crc32.Update(crc, castagnoli, b)
	}
	if stored := le.Uint32(h[4:]); stored != crc {
		return nil, formatErr(s, base+pos+4, fmt.Errorf("%w: stored 0x%08X, computed 0x%08X", ErrChecksum, stored, crc))
	}
	dataSector := descSectors
	for i := range count {
		slot := i + 2
		d := sector(slot / 128)[(slot%128)*vhdxLogDescSize:][:vhdxLogDescSize]
		doff := base + (pos+(slot/128)*vhdxLogSector)%n + (slot%128)*vhdxLogDescSize
		fileOff := int64(le.Uint64(d[16:]))
		if le.Uint64(d[24:]) != e.SequenceNumber {
			return nil, formatErrf(s, doff+24, "descriptor %d: sequence number %d, the entry's is %d", i, le.Uint64(d[24:]), e.SequenceNumber)
		}
		if fileOff%vhdxLogSector != 0 || fileOff < 0 {
			return nil, formatErrf(s, doff+16, "descriptor %d: file offset %d not 4 KiB aligned", i, fileOff)
		}
		switch string(d[:4]) {
		case vhdxLogDescZero:
			zl := int64(le.Uint64(d[8:]))
			if zl%vhdxLogSector != 0 || zl < 0 {
				return nil, formatErrf(s, doff+8, "descriptor %d: zero length %d not 4 KiB aligned", i, zl)
			}
			e.Descriptors = append(e.Descriptors, VHDXLogDescriptor{FileOffset: fileOff, ZeroLength: zl})
		case vhdxLogDescData:
			if dataSector >= sectors {
				return nil, formatErrf(s, doff, "descriptor %d: no data sector inside the entry", i)
			}
			ds := sector(dataSector)
			dsOff := base + (pos+dataSector*vhdxLogSector)%n
			dataSector++
			if string(ds[:4]) != vhdxLogDataSignature || uint64(le.Uint32(ds[4:]))<<32|uint64(le.Uint32(ds[4092:])) != e.SequenceNumber {
				return nil, formatErrf(s, dsOff, "data sector of descriptor %d: bad signature or sequence number", i)
			}
			data := make([]byte, vhdxLogSector)
			copy(data, d[8:16])        // leading bytes
			copy(data[8:], ds[8:4092]) // body
			copy(data[4092:], d[4:8])  // trailing bytes
			e.Descriptors = append(e.Descriptors, VHDXLogDescriptor{FileOffset: fileOff, Data: data})
		default:
			return nil, formatErrf(s, doff, "descriptor %d: signature %q", i, d[:4])
		}
	}
	if dataSector != sectors {
		return nil, formatErrf(s, base+pos+8, "entry of %d sectors has %d descriptor and data sectors", sectors, dataSector)
	}
	return e, nil
}

// ReadVHDXLog returns the active sequence of the log of a VHDX whose current
// header is h: the run of valid, consecutive entries whose last entry has the
// highest sequence number, oldest first. An empty result means nothing to replay.
func ReadVHDXLog(r io.ReaderAt, h VHDXHeader, fileSize int64) ([]*VHDXLogEntry, error) {
	if h.LogGUID == (guid.GUID{}) {
		return nil, nil
	}
	base, n := int64(h.LogOffset), int64(h.LogLength)
	if n == 0 {
		return nil, nil
	}
	if n > vhdxMaxLogLength {
		return nil, formatErr("VHDX log", base, fmt.Errorf("%w: log of %d bytes", ErrUnsupported, n))
	}
	if base+n > fileSize {
		return nil, formatErr("VHDX log", base, fmt.Errorf("%w: log of %d bytes at %d, file of %d bytes", ErrTruncated, n, base, fileSize))
	}
	log := make([]byte, n)
	if _, err := r.ReadAt(log, base); err != nil {
		return nil, formatErr("VHDX log", base, ioErr(err))
	}
	valid := map[int64]*VHDXLogEntry{}
	for pos := int64(0); pos < n; pos += vhdxLogSector {
		if string(log[pos:pos+4]) != vhdxLogEntrySignature {
			continue
		}
		if e, err := ParseVHDXLogEntry(log, pos, h.LogGUID, base); err == nil {
			valid[pos] = e
		}
	}
	var best []*VHDXLogEntry
	for pos := int64(0); pos < n; pos += vhdxLogSector {
		e := valid[pos]
		if e == nil {
			continue
		}
		seq := []*VHDXLogEntry{e}
		for len(seq) < len(valid) {
			last := seq[len(seq)-1]
			next := valid[(last.Position+int64(last.Length))%n]
			if next == nil || next.SequenceNumber != last.SequenceNumber+1 {
				break
			}
			seq = append(seq, next)
		}
		lastSeq := seq[len(seq)-1].SequenceNumber
		if best == nil || lastSeq > best[len(best)-1].SequenceNumber ||
			(lastSeq == best[len(best)-1].SequenceNumber && len(seq) > len(best)) {
			best = seq
		}
	}
	// The last entry's tail names the first entry of its sequence.
	if len(best) > 0 {
		tail := int64(best[len(best)-1].Tail)
		for i, e := range best {
			if e.Position == tail {
				best = best[i:]
				break
			}
		}
	}
	return best, nil
}

// replayLog applies the active sequence of the log through w and marks the log
// empty. Without w (a read-only open) a log with entries to replay gives
// ErrLogReplayNeeded and nothing is written. It returns the new file size.
func replayLog(r io.ReaderAt, w *os.File, fileSize int64, info *VHDXInfo) (int64, error) {
	entries, err := ReadVHDXLog(r, info.Header, fileSize)
	if err != nil {
		return 0, err
	}
	if w == nil {
		if len(entries) > 0 {
			return 0, fmt.Errorf("%w (%d log entries, sequence %d to %d)", ErrLogReplayNeeded, len(entries), entries[0].SequenceNumber, entries[len(entries)-1].SequenceNumber)
		}
		return fileSize, nil
	}
	zeros := make([]byte, 1<<20)
	for _, e := range entries {
		if int64(e.FlushedFileOffset) > fileSize {
			return 0, formatErr("VHDX log entry", int64(info.Header.LogOffset)+e.Position+48,
				fmt.Errorf("%w: flushed file offset %d beyond the file of %d bytes", ErrTruncated, e.FlushedFileOffset, fileSize))
		}
		for _, d := range e.Descriptors {
			if d.Data != nil {
				if _, err := w.WriteAt(d.Data, d.FileOffset); err != nil {
					return 0, err
				}
				continue
			}
			for o := int64(0); o < d.ZeroLength; o += int64(len(zeros)) {
				n := min(int64(len(zeros)), d.ZeroLength-o)
				if _, err := w.WriteAt(zeros[:n], d.FileOffset+o); err != nil {
					return 0, err
				}
			}
		}
	}
	fi, err := w.Stat()
	if err != nil {
		return 0, err
	}
	fileSize = fi.Size()
	if len(entries) > 0 {
		if last := int64(entries[len(entries)-1].LastFileOffset); fileSize < last {
			fileSize = (last + vhdxMiB - 1) / vhdxMiB * vhdxMiB
			if err := w.Truncate(fileSize); err != nil {
				return 0, err
			}
		}
	}
	if err := w.Sync(); err != nil {
		return 0, err
	}
	h := info.Header
	h.LogGUID = guid.GUID{}
	if err := writeVHDXHeaders(w, info, h); err != nil {
		return 0, err
	}
	return fileSize, nil
}

// vhdxLogWrite is a 4 KiB-aligned update of the file made through the log.
type vhdxLogWrite struct {
	off  int64
	data []byte // a multiple of 4096 bytes
}

// marshalLogEntry builds one log entry at log position pos holding writes, zero
// descriptors for sectors of zeros and data descriptors for the rest.
func marshalLogEntry(writes []vhdxLogWrite, seq uint64, logGUID guid.GUID, pos int64, flushed, last int64) ([]byte, error) {
	type desc struct {
		off  int64
		data []byte
	}
	var descs []desc
	for _, w := range writes {
		if w.off%vhdxLogSector != 0 || len(w.data)%vhdxLogSector != 0 {
			return nil, fmt.Errorf("vhd: log write of %d bytes at %d is not 4 KiB aligned", len(w.data), w.off)
		}
		for i := 0; i < len(w.data); i += vhdxLogSector {
			descs = append(descs, desc{w.off + int64(i), w.data[i : i+vhdxLogSector]})
		}
	}
	descSectors := (len(descs) + 2 + 127) / 128
	dataSectors := 0
	for _, d := range descs {
		if !allZero(d.data) {
			dataSectors++
		}
	}
	b := make([]byte, (descSectors+dataSectors)*vhdxLogSector)
	le := binary.LittleEndian
	copy(b, vhdxLogEntrySignature)
	le.PutUint32(b[8:], uint32(len(b)))
	le.PutUint32(b[12:], uint32(pos))
	le.PutUint64(b[16:], seq)
	le.PutUint32(b[24:], uint32(len(descs)))
	putWinGUID(b[32:], logGUID)
	le.PutUint64(b[48:], uint64(flushed))
	le.PutUint64(b[56:], uint64(last))
	ds := descSectors
	for i, d := range descs {
		p := b[(i+2)*vhdxLogDescSize:]
		le.PutUint64(p[16:], uint64(d.off))
		le.PutUint64(p[24:], seq)
		if allZero(d.data) {
			copy(p, vhdxLogDescZero)
			le.PutUint64(p[8:], vhdxLogSector)
			continue
		}
		copy(p, vhdxLogDescData)
		copy(p[4:8], d.data[4092:])
		copy(p[8:16], d.data[:8])
		s := b[ds*vhdxLogSector:][:vhdxLogSector]
		copy(s, vhdxLogDataSignature)
		le.PutUint32(s[4:], uint32(seq>>32))
		copy(s[8:4092], d.data[8:4092])
		le.PutUint32(s[4092:], uint32(seq))
		ds++
	}
	le.PutUint32(b[4:], crc32c(b, 4))
	return b, nil
}

// logged makes writes crash-safely through the log: the entry is written and
// synced, the headers get a new LogGuid, the writes are made in place and synced,
// and the LogGuid is cleared. A crash at any point leaves either the old file or
// a log that the next writable open replays. With stop set it returns after the
// headers point at the log, leaving the replay to the next open (for tests).
func logged(w *os.File, info *VHDXInfo, writes []vhdxLogWrite, stop bool) error {
	if info.Header.LogGUID != (guid.GUID{}) {
		return errors.New("vhd: log in use")
	}
	fi, err := w.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	last := size
	for _, wr := range writes {
		last = max(last, wr.off+int64(len(wr.data)))
	}
	var a [16]byte
	if _, err := rand.Read(a[:]); err != nil {
		return err
	}
	logGUID := guid.FromArray(a)
	entry, err := marshalLogEntry(writes, 1, logGUID, 0, size, last)
	if err != nil {
		return err
	}
	if int64(len(entry)) > int64(info.Header.LogLength) {
		return fmt.Errorf("vhd: log entry of %d bytes does not fit the log of %d bytes", len(entry), info.Header.LogLength)
	}
	if _, err := w.WriteAt(entry, int64(info.Header.LogOffset)); err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return err
	}
	h := info.Header
	h.LogGUID = logGUID
	if err := writeVHDXHeaders(w, info, h); err != nil {
		return err
	}
	if stop {
		return nil
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.data, wr.off); err != nil {
			return err
		}
	}
	if err := w.Sync(); err != nil {
		return err
	}
	h.LogGUID = guid.GUID{}
	return writeVHDXHeaders(w, info, h)
}
