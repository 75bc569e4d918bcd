package tarstream

import (
	"archive/tar"
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"
)

// sparseEntry is a fragment of a sparse file: data in the map, a hole once inverted.
type sparseEntry struct{ Offset, Length int64 }

func (s sparseEntry) end() int64 { return s.Offset + s.Length }

// handleSparse reads the sparse map of an old GNU sparse entry (type 'S') or of a
// PAX one (GNU.sparse.* records, formats 0.0, 0.1 and 1.0) and makes Read fill the
// holes with zeros. Other entries are left as they are.
func (tr *Reader) handleSparse(hdr *tar.Header, raw *[blockSize]byte) error {
	var spd []sparseEntry
	var err error
	if hdr.Typeflag == tar.TypeGNUSparse {
		spd, err = tr.readOldGNUSparseMap(hdr, raw)
	} else {
		spd, err = tr.readPAXSparseMap(hdr)
	}
	if err != nil || spd == nil {
		return err
	}
	if isHeaderOnlyType(hdr.Typeflag) || !validSparse(spd, hdr.Size) {
		return tar.ErrHeader
	}
	tr.holes = invertSparse(spd, hdr.Size)
	tr.sparse, tr.spPos = true, 0
	return nil
}

func (tr *Reader) readOldGNUSparseMap(hdr *tar.Header, blk *[blockSize]byte) ([]sparseEntry, error) {
	if tr.blockFormat(blk) != formatGNU {
		return nil, tar.ErrHeader
	}
	var p numParser
	hdr.Size = p.numeric(blk[offGNURealSize : offGNURealSize+12])
	if p.bad {
		return nil, tar.ErrHeader
	}
	s := blk[offGNUSparse : offGNUSparse+4*24+1]
	spd := make([]sparseEntry, 0, 4)
	total := len(s)
	for total < maxSpecialFileSize {
		n := len(s) / 24
		for i := 0; i < n; i++ {
			e := s[i*24:]
			if e[0] == 0 {
				break
			}
			off := p.numeric(e[:12])
			length := p.numeric(e[12:24])
			if p.bad {
				return nil, tar.ErrHeader
			}
			if len(spd) >= maxSparseEntries {
				return nil, ErrSparseTooLong
			}
			spd = append(spd, sparseEntry{off, length})
		}
		if s[n*24] > 0 {
			// More entries follow in an extension block, before the data.
			if err := tr.readFull(blk[:]); err != nil {
				return nil, unexpected(err)
			}
			s = blk[:21*24+1]
			total += len(s)
			continue
		}
		return spd, nil
	}
	return nil, ErrSparseTooLong
}

func (tr *Reader) readPAXSparseMap(hdr *tar.Header) ([]sparseEntry, error) {
	recs := hdr.PAXRecords
	var is1x0 bool
	major, minor := recs[paxGNUSparseMajor], recs[paxGNUSparseMinor]
	switch {
	case major == "0" && (minor == "0" || minor == "1"):
	case major == "1" && minor == "0":
		is1x0 = true
	case major != "" || minor != "":
		return nil, nil // a version this reader does not know: an ordinary entry
	case recs[paxGNUSparseMap] != "":
		// 0.0 and 0.1 carry no version records
	default:
		return nil, nil
	}
	hdr.Format = tar.FormatPAX
	if name := recs[paxGNUSparseName]; name != "" {
		hdr.Name = name
		tr.name = name
	}
	size := recs[paxGNUSparseSize]
	if size == "" {
		size = recs[paxGNUSparseRealSize]
	}
	if size != "" {
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil {
			return nil, tar.ErrHeader
		}
		hdr.Size = n
	}
	if is1x0 {
		return tr.readSparseMap1x0()
	}
	return sparseMap0x1(recs)
}

// readSparseMap1x0 reads the map at the start of the data section: newline-ended
// decimal numbers, the count then offset and length pairs, in whole blocks.
func (tr *Reader) readSparseMap1x0() ([]sparseEntry, error) {
	var buf bytes.Buffer
	var blk [blockSize]byte
	newlines, total := int64(0), 0
	feed := func(n int64) error {
		for newlines < n {
			total += blockSize
			if total > maxSpecialFileSize {
				return ErrSparseTooLong
			}
			if _, err := tr.readDataFull(blk[:]); err != nil {
				return unexpected(err)
			}
			buf.Write(blk[:])
			newlines += int64(bytes.Count(blk[:], []byte{'\n'}))
		}
		return nil
	}
	token := func() string {
		newlines--
		t, _ := buf.ReadString('\n')
		return strings.TrimRight(t, "\n")
	}
	if err := feed(1); err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(token(), 10, 0)
	if err != nil || n < 0 || int(2*n) < int(n) {
		return nil, tar.ErrHeader
	}
	if err := feed(2 * n); err != nil {
		return nil, err
	}
	spd := make([]sparseEntry, 0, min(n, 1024))
	for i := int64(0); i < n; i++ {
		off, err1 := strconv.ParseInt(token(), 10, 64)
		length, err2 := strconv.ParseInt(token(), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, tar.ErrHeader
		}
		if len(spd) >= maxSparseEntries {
			return nil, ErrSparseTooLong
		}
		spd = append(spd, sparseEntry{off, length})
	}
	return spd, nil
}

// sparseMap0x1 reads the map of GNU.sparse.numblocks and GNU.sparse.map.
func sparseMap0x1(recs map[string]string) ([]sparseEntry, error) {
	n, err := strconv.ParseInt(recs[paxGNUSparseNumBlocks], 10, 0)
	if err != nil || n < 0 || int(2*n) < int(n) {
		return nil, tar.ErrHeader
	}
	fields := strings.Split(recs[paxGNUSparseMap], ",")
	if len(fields) == 1 && fields[0] == "" {
		fields = fields[:0]
	}
	if int64(len(fields)) != 2*n {
		return nil, tar.ErrHeader
	}
	spd := make([]sparseEntry, 0, n)
	for len(fields) >= 2 {
		off, err1 := strconv.ParseInt(fields[0], 10, 64)
		length, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, tar.ErrHeader
		}
		if len(spd) >= maxSparseEntries {
			return nil, ErrSparseTooLong
		}
		spd = append(spd, sparseEntry{off, length})
		fields = fields[2:]
	}
	return spd, nil
}

// validSparse checks the fragments are in order, do not overlap and fit in size.
func validSparse(sp []sparseEntry, size int64) bool {
	if size < 0 {
		return false
	}
	var pre sparseEntry
	for _, cur := range sp {
		switch {
		case cur.Offset < 0 || cur.Length < 0:
			return false
		case cur.Offset > math.MaxInt64-cur.Length:
			return false
		case cur.end() > size:
			return false
		case pre.end() > cur.Offset:
			return false
		}
		pre = cur
	}
	return true
}

// invertSparse turns data fragments into the holes between them; the last hole,
// possibly empty, ends at size.
func invertSparse(src []sparseEntry, size int64) []sparseEntry {
	dst := src[:0]
	var pre sparseEntry
	for _, cur := range src {
		if cur.Length == 0 {
			continue
		}
		pre.Length = cur.Offset - pre.Offset
		if pre.Length > 0 {
			dst = append(dst, pre)
		}
		pre.Offset = cur.end()
	}
	pre.Length = size - pre.Offset
	return append(dst, pre)
}

func (tr *Reader) sparseRemaining() int64 {
	return tr.holes[len(tr.holes)-1].end() - tr.spPos
}

// readSparse reads a sparse entry's contents: data fragments from the data
// section, holes as zeros.
func (tr *Reader) readSparse(b []byte) (n int, err error) {
	finished := int64(len(b)) >= tr.sparseRemaining()
	if finished {
		b = b[:tr.sparseRemaining()]
	}
	b0 := b
	end := tr.spPos + int64(len(b))
	for end > tr.spPos && err == nil {
		var nf int
		holeStart, holeEnd := tr.holes[0].Offset, tr.holes[0].end()
		if tr.spPos < holeStart {
			bf := b[:min(int64(len(b)), holeStart-tr.spPos)]
			nf, err = tr.readDataFull(bf)
		} else {
			bf := b[:min(int64(len(b)), holeEnd-tr.spPos)]
			clear(bf)
			nf = len(bf)
		}
		b = b[nf:]
		tr.spPos += int64(nf)
		if tr.spPos >= holeEnd && len(tr.holes) > 1 {
			tr.holes = tr.holes[1:]
		}
	}
	n = len(b0) - len(b)
	switch {
	case err == io.EOF:
		return n, ErrMissingData
	case err != nil:
		return n, err
	case tr.sparseRemaining() == 0 && tr.remain > 0:
		return n, ErrUnreferencedData
	case finished:
		return n, io.EOF
	}
	return n, nil
}
