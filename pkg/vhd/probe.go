package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FormatRaw is a raw disk image: the file is the virtual disk, byte for byte.
// [Probe] reports it only for content it recognises (a file system or a
// partition table at its usual place); any other file is raw only when the
// caller says so.
const FormatRaw Format = 3

// ErrUnknownFormat: Probe recognises neither a VHD or VHDX structure nor the
// content of a raw disk image (a file system or a partition table). Such a file
// is taken as a raw image only when the caller says it is one. It matches
// ErrInvalidFormat.
var ErrUnknownFormat = fmt.Errorf("%w: not a VHD or VHDX, and no file system or partition table of a raw image", ErrInvalidFormat)

// Probed is what [Probe] learns from the content of a disk file.
type Probed struct {
	Format Format
	// Content names what identified a raw image: "ext4" (also ext2 and ext3),
	// "ntfs", "gpt", "mbr", "iso9660", "squashfs" or "erofs". Empty for VHD and VHDX.
	Content string
}

// footerSearch is how far from the end Probe looks for a VHD footer that is not
// where it belongs (a file cut short, or grown after the footer was written).
const footerSearch = 64 << 10

// Probe tells the format of a disk from its content: a VHDX by its file type
// identifier at offset 0, a VHD by its footer in the last 512 bytes (or the
// copy of it at offset 0 that dynamic and differencing disks carry), a raw
// image by a file system or partition table it holds. r holds size bytes.
//
// A VHD whose footer is not in the last 512 bytes (its tail cut short, or
// garbage appended) is reported as FormatVHD together with a *FormatError
// matching ErrTruncated or ErrInvalidFormat, never as raw: binding such a file
// as a raw disk would expose the VHD's metadata as disk data. Content that
// Probe does not recognise gives ErrUnknownFormat.
func Probe(r io.ReaderAt, size int64) (Probed, error) {
	head := make([]byte, 4096)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Probed{}, err
	}
	head = head[:n]
	if bytes.HasPrefix(head, []byte(vhdxSignature)) {
		return Probed{Format: FormatVHDX}, nil
	}
	if size >= FooterSize {
		tail := make([]byte, FooterSize)
		if _, err := r.ReadAt(tail, size-FooterSize); err != nil && !errors.Is(err, io.EOF) {
			return Probed{}, err
		}
		if bytes.HasPrefix(tail, []byte(footerCookie)) {
			return Probed{Format: FormatVHD}, nil
		}
	}
	// A footer elsewhere near the end, or the copy at offset 0 without its
	// footer: a damaged VHD.
	if off, ok := findCookie(r, size); ok {
		return Probed{Format: FormatVHD}, formatErr("footer", off, fmt.Errorf("%w: footer at offset %d, but a %d-byte file keeps it at %d (the file was cut short or extended)",
			ErrTruncated, off, size, size-FooterSize))
	}
	if bytes.HasPrefix(head, []byte(footerCookie)) {
		return Probed{Format: FormatVHD}, formatErr("footer", max(size-FooterSize, 0), fmt.Errorf("%w: the footer copy at offset 0 has no footer at the end of the %d-byte file", ErrTruncated, size))
	}
	if c := rawContent(r, head); c != "" {
		return Probed{Format: FormatRaw, Content: c}, nil
	}
	return Probed{}, ErrUnknownFormat
}

// ProbeFile opens path and probes it (see [Probe]). Errors name the path.
func ProbeFile(path string) (Probed, error) {
	f, err := os.Open(path)
	if err != nil {
		return Probed{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Probed{}, err
	}
	if !st.Mode().IsRegular() {
		return Probed{}, &os.PathError{Op: "probe", Path: path, Err: fmt.Errorf("not a regular file: %w", ErrUnsupported)}
	}
	p, err := Probe(f, st.Size())
	if err != nil {
		return p, fmt.Errorf("vhd: probing %s: %w", path, err)
	}
	return p, nil
}

// findCookie looks for the footer cookie in the last footerSearch bytes of r.
func findCookie(r io.ReaderAt, size int64) (int64, bool) {
	start := max(size-footerSearch, 0)
	b := make([]byte, size-start)
	n, _ := r.ReadAt(b, start)
	i := bytes.LastIndex(b[:n], []byte(footerCookie))
	if i < 0 || start+int64(i) == 0 {
		return 0, false
	}
	return start + int64(i), true
}

// rawContent names the file system or partition table at the start of a raw
// image, or returns "".
func rawContent(r io.ReaderAt, head []byte) string {
	at := func(off int, s string) bool {
		return len(head) >= off+len(s) && string(head[off:off+len(s)]) == s
	}
	switch {
	case len(head) >= 1024+58 && binary.LittleEndian.Uint16(head[1024+56:]) == 0xEF53:
		return "ext4"
	case at(3, "NTFS    "):
		return "ntfs"
	case at(512, "EFI PART"):
		return "gpt"
	case at(0, "hsqs"):
		return "squashfs"
	case len(head) >= 1024+4 && binary.LittleEndian.Uint32(head[1024:]) == 0xE0F5E1E2:
		return "erofs"
	case len(head) >= 512 && head[510] == 0x55 && head[511] == 0xAA && mbrPlausible(head[446:510]):
		return "mbr"
	}
	cd := make([]byte, 6)
	if n, _ := r.ReadAt(cd, 32768); n == 6 && string(cd[1:6]) == "CD001" {
		return "iso9660"
	}
	return ""
}

// mbrPlausible checks the four partition entries of an MBR: status bytes 0 or
// 0x80 and at least one partition.
func mbrPlausible(entries []byte) bool {
	used := false
	for i := 0; i < 4; i++ {
		e := entries[i*16 : i*16+16]
		if e[0] != 0 && e[0] != 0x80 {
			return false
		}
		if e[4] != 0 {
			used = true
		}
	}
	return used
}

// FormatFromName is the format a new disk named name gets: FormatVHDX for
// ".vhdx", FormatVHD for ".vhd", FormatRaw for ".img" and ".raw" (any case),
// and 0 for other names.
func FormatFromName(name string) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".vhdx", ".avhdx":
		return FormatVHDX
	case ".vhd", ".avhd":
		return FormatVHD
	case ".img", ".raw":
		return FormatRaw
	}
	return 0
}
