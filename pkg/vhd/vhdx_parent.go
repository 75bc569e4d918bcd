package vhd

// The parent locator metadata item of a differencing VHDX ([MS-VHDX] §2.6.2.6): a
// locator type GUID and UTF-16LE key/value pairs naming the parent and pinning
// its DataWriteGuid.

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// VHDXParentLocatorType is the locator type of a VHDX parent.
var VHDXParentLocatorType = guid.GUID{Data1: 0xB04AEFB7, Data2: 0xD19E, Data3: 0x4A81, Data4: [8]byte{0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13}}

// Parent locator keys.
const (
	VHDXKeyParentLinkage     = "parent_linkage"
	VHDXKeyParentLinkage2    = "parent_linkage2"
	VHDXKeyRelativePath      = "relative_path"
	VHDXKeyVolumePath        = "volume_path"
	VHDXKeyAbsoluteWin32Path = "absolute_win32_path"
)

const (
	vhdxLocatorHeaderSize = 20
	vhdxLocatorEntrySize  = 12
)

// VHDXKeyValue is one entry of a parent locator.
type VHDXKeyValue struct{ Key, Value string }

// VHDXParentLocator is the parent locator item of a differencing VHDX.
type VHDXParentLocator struct {
	Type    guid.GUID
	Entries []VHDXKeyValue
}

// Get returns the value of key, or "".
func (l *VHDXParentLocator) Get(key string) string {
	for _, e := range l.Entries {
		if e.Key == key {
			return e.Value
		}
	}
	return ""
}

// MarshalBinary encodes the locator: header, entries, then the keys and values
// packed after the entry array.
func (l *VHDXParentLocator) MarshalBinary() ([]byte, error) {
	if len(l.Entries) > 0xFFFF {
		return nil, fmt.Errorf("vhd: %d parent locator entries", len(l.Entries))
	}
	le := binary.LittleEndian
	b := make([]byte, vhdxLocatorHeaderSize+vhdxLocatorEntrySize*len(l.Entries))
	putWinGUID(b, l.Type)
	le.PutUint16(b[18:], uint16(len(l.Entries)))
	for i, e := range l.Entries {
		k, v := encodeUTF16LE(e.Key), encodeUTF16LE(e.Value)
		if len(k) > 0xFFFF || len(v) > 0xFFFF {
			return nil, fmt.Errorf("vhd: parent locator entry %q too long", e.Key)
		}
		p := b[vhdxLocatorHeaderSize+vhdxLocatorEntrySize*i:]
		le.PutUint32(p, uint32(len(b)))
		le.PutUint16(p[8:], uint16(len(k)))
		b = append(b, k...)
		p = b[vhdxLocatorHeaderSize+vhdxLocatorEntrySize*i:]
		le.PutUint32(p[4:], uint32(len(b)))
		le.PutUint16(p[10:], uint16(len(v)))
		b = append(b, v...)
	}
	if len(b) > vhdxMiB {
		return nil, fmt.Errorf("vhd: parent locator of %d bytes", len(b))
	}
	return b, nil
}

// ParseVHDXParentLocatorAt decodes a parent locator item read at file offset
// base: the VHDX locator type, entries inside the item, keys and values of whole
// UTF-16 units, no key twice, a parent_linkage and at least one path.
func ParseVHDXParentLocatorAt(b []byte, base int64) (*VHDXParentLocator, error) {
	const s = "VHDX parent locator"
	if len(b) < vhdxLocatorHeaderSize {
		return nil, formatErr(s, base+int64(len(b)), fmt.Errorf("%w: %d bytes", ErrTruncated, len(b)))
	}
	le := binary.LittleEndian
	l := &VHDXParentLocator{Type: winGUID(b)}
	if l.Type != VHDXParentLocatorType {
		return nil, formatErr(s, base, fmt.Errorf("%w: locator type %v", ErrUnsupported, l.Type))
	}
	n := int(le.Uint16(b[18:]))
	if vhdxLocatorHeaderSize+vhdxLocatorEntrySize*n > len(b) {
		return nil, formatErrf(s, base+18, "%d entries do not fit in %d bytes", n, len(b))
	}
	seen := map[string]bool{}
	for i := range n {
		p := b[vhdxLocatorHeaderSize+vhdxLocatorEntrySize*i:]
		off := base + vhdxLocatorHeaderSize + vhdxLocatorEntrySize*int64(i)
		ko, vo := int64(le.Uint32(p)), int64(le.Uint32(p[4:]))
		kl, vl := int64(le.Uint16(p[8:])), int64(le.Uint16(p[10:]))
		if kl == 0 || kl%2 != 0 || vl%2 != 0 || ko+kl > int64(len(b)) || vo+vl > int64(len(b)) {
			return nil, formatErrf(s, off, "entry %d: key of %d bytes at %d, value of %d bytes at %d, in an item of %d bytes", i, kl, ko, vl, vo, len(b))
		}
		kv := VHDXKeyValue{Key: decodeUTF16LE(b[ko : ko+kl]), Value: decodeUTF16LE(b[vo : vo+vl])}
		if kv.Key == "" {
			return nil, formatErrf(s, off, "entry %d: empty key", i)
		}
		if seen[kv.Key] {
			return nil, formatErrf(s, off, "entry %d: key %q listed twice", i, kv.Key)
		}
		seen[kv.Key] = true
		l.Entries = append(l.Entries, kv)
	}
	if _, err := parseLinkage(l.Get(VHDXKeyParentLinkage)); err != nil {
		return nil, formatErrf(s, base, "parent_linkage %q: %v", l.Get(VHDXKeyParentLinkage), err)
	}
	if l.Get(VHDXKeyRelativePath) == "" && l.Get(VHDXKeyVolumePath) == "" && l.Get(VHDXKeyAbsoluteWin32Path) == "" {
		return nil, formatErrf(s, base, "no parent path")
	}
	return l, nil
}

// parseLinkage parses a braced GUID such as {01234567-89ab-cdef-0123-456789abcdef}.
func parseLinkage(s string) (guid.GUID, error) {
	if len(s) != 38 || s[0] != '{' || s[37] != '}' {
		return guid.GUID{}, fmt.Errorf("not a braced GUID")
	}
	return guid.FromString(s[1:37])
}

func linkageText(g guid.GUID) string { return "{" + strings.ToLower(g.String()) + "}" }

// parentCandidates lists the host paths the locator names, in the order of the
// specification: relative_path (from the child's directory), volume_path, then
// absolute_win32_path. Windows separators become slashes; a drive letter or
// volume GUID prefix is dropped, leaving a path from the root.
func (l *VHDXParentLocator) parentCandidates(childPath string) []string {
	var out []string
	dir := filepath.Dir(childPath)
	for _, k := range []string{VHDXKeyRelativePath, VHDXKeyVolumePath, VHDXKeyAbsoluteWin32Path} {
		v := l.Get(k)
		if v == "" {
			continue
		}
		switch k {
		case VHDXKeyRelativePath:
			p := strings.ReplaceAll(v, `\`, "/")
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			out = append(out, p)
		case VHDXKeyVolumePath:
			// \\?\Volume{GUID}\dir\file
			if i := strings.Index(v, `}\`); strings.HasPrefix(v, `\\?\Volume{`) && i > 0 {
				out = append(out, strings.ReplaceAll(v[i+1:], `\`, "/"))
			}
		case VHDXKeyAbsoluteWin32Path:
			p := v
			if len(p) >= 2 && p[1] == ':' {
				p = p[2:]
			}
			out = append(out, strings.ReplaceAll(p, `\`, "/"))
		}
	}
	return out
}

// newParentLocator describes parent (open, VHDX) for a child at childPath.
func newParentLocator(parent *Disk, parentPath, childPath string) (*VHDXParentLocator, error) {
	abs, err := filepath.Abs(parentPath)
	if err != nil {
		return nil, err
	}
	childAbs, err := filepath.Abs(childPath)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(filepath.Dir(childAbs), abs)
	if err != nil {
		return nil, err
	}
	rel = strings.ReplaceAll(rel, "/", `\`)
	if !strings.HasPrefix(rel, "..") {
		rel = `.\` + rel
	}
	return &VHDXParentLocator{Type: VHDXParentLocatorType, Entries: []VHDXKeyValue{
		{VHDXKeyParentLinkage, linkageText(parent.vhdx.info.Header.DataWriteGUID)},
		{VHDXKeyRelativePath, rel},
		// Linux paths have no drive letter: the absolute path is written from the
		// root of the current drive, which Windows accepts as a Win32 path.
		{VHDXKeyAbsoluteWin32Path, strings.ReplaceAll(abs, "/", `\`)},
	}}, nil
}

// openVHDXParent resolves and opens the parent of a differencing VHDX and checks
// its DataWriteGuid against parent_linkage (or parent_linkage2).
func (x *vhdxFile) openParent(depth int) (*Disk, error) {
	l := x.info.ParentLocator
	want := []string{l.Get(VHDXKeyParentLinkage), l.Get(VHDXKeyParentLinkage2)}
	candidates := l.parentCandidates(x.d.path)
	for _, p := range candidates {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		parent, err := openDepth(p, true, depth+1)
		if err != nil {
			return nil, fmt.Errorf("vhd: opening parent: %w", err)
		}
		if parent.vhdx == nil {
			parent.Close()
			return nil, fmt.Errorf("%w: parent %s of a VHDX is a %s", ErrParentMismatch, p, parent.Format())
		}
		got := parent.vhdx.info.Header.DataWriteGUID
		ok := false
		for _, w := range want {
			if g, err := parseLinkage(w); err == nil && g == got {
				ok = true
			}
		}
		if !ok {
			parent.Close()
			return nil, fmt.Errorf("%w: %s has DataWriteGuid %v, the child's parent_linkage is %s", ErrParentMismatch, p, got, want[0])
		}
		// A child is made with its parent's size and may have grown since
		// (Disk.Resize): sectors past the parent's end read as zeros. A
		// child smaller than its parent is not one this package made.
		if parent.size > x.d.size || parent.sector != x.d.sector {
			parent.Close()
			return nil, fmt.Errorf("%w: parent %s has size %d and sector size %d, the child %d and %d", ErrParentMismatch, p, parent.size, parent.sector, x.d.size, x.d.sector)
		}
		return parent, nil
	}
	return nil, fmt.Errorf("%w: tried %q", ErrParentNotFound, candidates)
}
