package tarstream

import (
	"archive/tar"
	"io"
	"time"
)

// Header block layout (POSIX ustar; GNU and star variants).
const (
	offName        = 0
	offMode        = 100
	offUID         = 108
	offGID         = 116
	offSize        = 124
	offMtime       = 136
	offChksum      = 148
	offTypeflag    = 156
	offLinkname    = 157
	offMagic       = 257
	offVersion     = 263
	offUname       = 265
	offGname       = 297
	offDevmajor    = 329
	offDevminor    = 337
	offPrefix      = 345 // ustar: 155 bytes
	offGNUAtime    = 345
	offGNUCtime    = 357
	offGNUSparse   = 386 // 4 entries of offset and length, 12 bytes each
	offGNUIsExt    = 482
	offGNURealSize = 483
	offStarAtime   = 476
	offStarCtime   = 488
	offStarTrailer = 508
)

type blockFormat int

const (
	formatUnknown blockFormat = iota
	formatV7
	formatUSTAR // ustar or PAX
	formatSTAR
	formatGNU
)

var zeroBlock [blockSize]byte

// numParser parses numeric header fields, remembering the first failure.
type numParser struct{ bad bool }

// octal parses an octal field: spaces and NULs around it are ignored, and the
// digits end at a NUL.
func (p *numParser) octal(b []byte) int64 {
	i, j := 0, len(b)
	for i < j && (b[i] == ' ' || b[i] == 0) {
		i++
	}
	for j > i && (b[j-1] == ' ' || b[j-1] == 0) {
		j--
	}
	if i == j {
		return 0
	}
	b = b[i:j]
	for k, c := range b {
		if c == 0 {
			b = b[:k]
			break
		}
	}
	var x uint64
	for _, c := range b {
		if c < '0' || c > '7' || x>>61 != 0 {
			p.bad = true
			return 0
		}
		x = x<<3 | uint64(c-'0')
	}
	return int64(x)
}

// numeric parses an octal or base-256 (GNU) field.
func (p *numParser) numeric(b []byte) int64 {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var inv byte
		if b[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range b {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 > 0 {
				p.bad = true
				return 0
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 > 0 {
			p.bad = true
			return 0
		}
		if inv == 0xff {
			return ^int64(x)
		}
		return int64(x)
	}
	return p.octal(b)
}

// cstring is the text of a field up to its first NUL.
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func cstringLen(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || c == 0 {
			return false
		}
	}
	return true
}

func (tr *Reader) blockFormat(b *[blockSize]byte) blockFormat {
	var p numParser
	sum := p.octal(b[offChksum : offChksum+8])
	var unsigned, signed int64
	for i, c := range b {
		if i >= offChksum && i < offChksum+8 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	if p.bad || (sum != unsigned && sum != signed) {
		return formatUnknown
	}
	magic := string(b[offMagic:offVersion])
	switch {
	case magic == "ustar\x00" && string(b[offStarTrailer:]) == "tar\x00":
		return formatSTAR
	case magic == "ustar\x00":
		return formatUSTAR
	case magic == "ustar " && string(b[offVersion:offVersion+2]) == " \x00":
		return formatGNU
	}
	return formatV7
}

// readHeader reads one header block into tr.blk and decodes it. io.EOF is the end of
// the archive: no more bytes, or one or two zero blocks.
func (tr *Reader) readHeader() (*tar.Header, *[blockSize]byte, error) {
	b := &tr.blk
	if err := tr.readFull(b[:]); err != nil {
		return nil, nil, err
	}
	if *b == zeroBlock {
		if err := tr.readFull(b[:]); err != nil {
			return nil, nil, err
		}
		if *b == zeroBlock {
			return nil, nil, io.EOF
		}
		return nil, nil, tar.ErrHeader
	}
	f := tr.blockFormat(b)
	if f == formatUnknown {
		return nil, nil, tar.ErrHeader
	}
	var p numParser
	hdr := &tar.Header{
		Typeflag: b[offTypeflag],
		Name:     cstring(b[offName:offMode]),
		Linkname: cstring(b[offLinkname:offMagic]),
		Size:     p.numeric(b[offSize:offMtime]),
		Mode:     p.numeric(b[offMode:offUID]),
		Uid:      int(p.numeric(b[offUID:offGID])),
		Gid:      int(p.numeric(b[offGID:offSize])),
		ModTime:  time.Unix(p.numeric(b[offMtime:offChksum]), 0),
	}
	if f > formatV7 {
		hdr.Uname = tr.intern(&tr.lastUname, cstringLen(b[offUname:offGname]))
		hdr.Gname = tr.intern(&tr.lastGname, cstringLen(b[offGname:offDevmajor]))
		hdr.Devmajor = p.numeric(b[offDevmajor:offDevminor])
		hdr.Devminor = p.numeric(b[offDevminor:offPrefix])
		var prefix []byte
		switch f {
		case formatUSTAR:
			hdr.Format = tar.FormatUSTAR
			prefix = cstringLen(b[offPrefix:500])
		case formatSTAR:
			prefix = cstringLen(b[offPrefix:offStarAtime])
			hdr.AccessTime = time.Unix(p.numeric(b[offStarAtime:offStarCtime]), 0)
			hdr.ChangeTime = time.Unix(p.numeric(b[offStarCtime:500]), 0)
		case formatGNU:
			hdr.Format = tar.FormatGNU
			var p2 numParser
			if a := b[offGNUAtime:offGNUCtime]; a[0] != 0 {
				hdr.AccessTime = time.Unix(p2.numeric(a), 0)
			}
			if c := b[offGNUCtime : offGNUCtime+12]; c[0] != 0 {
				hdr.ChangeTime = time.Unix(p2.numeric(c), 0)
			}
			if p2.bad {
				// Go before 1.8 wrote a ustar prefix into GNU headers; read it as
				// archive/tar does.
				hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
				if s := cstringLen(b[offPrefix:500]); isASCII(s) {
					prefix = s
				}
				hdr.Format = tar.FormatUnknown
			}
		}
		if len(prefix) > 0 {
			hdr.Name = string(prefix) + "/" + hdr.Name
		}
	}
	if p.bad {
		return nil, nil, tar.ErrHeader
	}
	return hdr, b, nil
}

// intern returns b as a string, the same string as last time when it has not
// changed: layers repeat a handful of user and group names.
func (tr *Reader) intern(last *string, b []byte) string {
	if string(b) == *last {
		return *last
	}
	*last = string(b)
	return *last
}
