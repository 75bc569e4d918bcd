package cimfs

import "io"

// Extent reports where the stream's bytes lie when they are stored as they
// read: contiguously, in one region file. It returns that file, the offset of
// the stream's first byte in it, and true; false for empty, sparse and PE image
// streams. Servers that move data between files without copying it (splice)
// use it; the extent was bounds-checked when the stream was opened.
func (f *File) Extent() (io.ReaderAt, int64, bool) {
	if f.s.sparse || f.s.length == 0 || f.pe != nil || f.s.typ != streamData {
		return nil, 0, false
	}
	return f.im.regions[f.s.offset.region()].f, f.s.offset.offset(), true
}
