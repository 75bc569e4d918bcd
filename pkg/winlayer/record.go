package winlayer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// record is what the metadata database keeps for one name. Its encoding is private to
// this package and versioned by its first byte.
type record struct {
	entry    Entry
	implicit bool   // a directory created only to hold children; never exported
	sdHash   []byte // key of the security descriptor in the descriptor bucket
	dataID   uint64 // nonzero: the unnamed stream of a reparse point lives in this stream file
	// parentLink names the file of a parent layer this name is a hard link to
	// (made by AddLink with a target the layer inherits), "" otherwise.
	parentLink string
}

const recordVersion = 1

const (
	recImplicit = 1 << iota
	recNoData
	recHasSD
	recDataFile
	recParentLink
)

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func (r *record) encode() []byte {
	e := &r.entry
	b := make([]byte, 0, 96+len(e.Name)+len(e.Reparse))
	b = append(b, recordVersion)
	var flags uint64
	if r.implicit {
		flags |= recImplicit
	}
	if e.NoDataStream {
		flags |= recNoData
	}
	if r.sdHash != nil {
		flags |= recHasSD
	}
	if r.dataID != 0 {
		flags |= recDataFile
	}
	if r.parentLink != "" {
		flags |= recParentLink
	}
	b = binary.AppendUvarint(b, flags)
	b = appendBytes(b, []byte(e.Name))
	for _, t := range []winfile.Filetime{e.Info.CreationTime, e.Info.LastAccessTime, e.Info.LastWriteTime, e.Info.ChangeTime} {
		b = binary.LittleEndian.AppendUint64(b, uint64(t))
	}
	b = binary.LittleEndian.AppendUint32(b, e.Info.FileAttributes)
	b = binary.AppendUvarint(b, uint64(e.Size))
	if r.sdHash != nil {
		b = appendBytes(b, r.sdHash)
	}
	if r.dataID != 0 {
		b = binary.AppendUvarint(b, r.dataID)
	}
	b = binary.AppendUvarint(b, uint64(len(e.ExtendedAttributes)))
	for _, ea := range e.ExtendedAttributes {
		b = append(b, ea.Flags)
		b = appendBytes(b, []byte(ea.Name))
		b = appendBytes(b, ea.Value)
	}
	b = appendBytes(b, e.Reparse)
	b = binary.AppendUvarint(b, uint64(len(e.Streams)))
	for _, s := range e.Streams {
		b = appendBytes(b, []byte(s.Name))
		b = binary.AppendUvarint(b, uint64(s.Size))
		b = binary.AppendUvarint(b, uint64(s.Attributes))
		b = binary.AppendUvarint(b, s.id)
	}
	b = binary.AppendUvarint(b, uint64(len(e.RawStreams)))
	for _, s := range e.RawStreams {
		b = binary.AppendUvarint(b, uint64(s.ID))
		b = binary.AppendUvarint(b, uint64(s.Attributes))
		b = appendBytes(b, []byte(s.Name))
		b = appendBytes(b, s.Data)
	}
	if r.parentLink != "" {
		b = appendBytes(b, []byte(r.parentLink))
	}
	return b
}

// decoder reads the record encoding with bounds checks; the first error sticks.
type decoder struct {
	b   []byte
	off int
	err error
}

var errShortRecord = errors.New("record truncated")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) fixed(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = errShortRecord
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errShortRecord
		return nil
	}
	v := d.fixed(int(n))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// count reads an element count and bounds it by the bytes left, so a corrupt count
// cannot cause a large allocation.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.off) {
		d.err = errShortRecord
		return 0
	}
	return int(n)
}

func decodeRecord(b []byte) (*record, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return nil, fmt.Errorf("%w: unknown record version", ErrCorrupt)
	}
	d := &decoder{b: b, off: 1}
	r := &record{}
	e := &r.entry
	flags := d.uvarint()
	r.implicit = flags&recImplicit != 0
	e.NoDataStream = flags&recNoData != 0
	e.Name = string(d.bytes())
	if t := d.fixed(36); t != nil {
		e.Info.CreationTime = winfile.Filetime(binary.LittleEndian.Uint64(t[0:]))
		e.Info.LastAccessTime = winfile.Filetime(binary.LittleEndian.Uint64(t[8:]))
		e.Info.LastWriteTime = winfile.Filetime(binary.LittleEndian.Uint64(t[16:]))
		e.Info.ChangeTime = winfile.Filetime(binary.LittleEndian.Uint64(t[24:]))
		e.Info.FileAttributes = binary.LittleEndian.Uint32(t[32:])
	}
	e.Size = int64(d.uvarint())
	if flags&recHasSD != 0 {
		r.sdHash = d.bytes()
	}
	if flags&recDataFile != 0 {
		r.dataID = d.uvarint()
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		var ea winfile.ExtendedAttribute
		if f := d.fixed(1); f != nil {
			ea.Flags = f[0]
		}
		ea.Name = string(d.bytes())
		ea.Value = d.bytes()
		e.ExtendedAttributes = append(e.ExtendedAttributes, ea)
	}
	if rp := d.bytes(); len(rp) > 0 {
		e.Reparse = rp
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		var s Stream
		s.Name = string(d.bytes())
		s.Size = int64(d.uvarint())
		s.Attributes = uint32(d.uvarint())
		s.id = d.uvarint()
		e.Streams = append(e.Streams, s)
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		var s RawStream
		s.ID = winfile.StreamID(d.uvarint())
		s.Attributes = uint32(d.uvarint())
		s.Name = string(d.bytes())
		s.Data = d.bytes()
		e.RawStreams = append(e.RawStreams, s)
	}
	if flags&recParentLink != 0 {
		r.parentLink = string(d.bytes())
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v at byte %d", ErrCorrupt, d.err, d.off)
	}
	if e.Size < 0 {
		return nil, fmt.Errorf("%w: negative size", ErrCorrupt)
	}
	return r, nil
}
