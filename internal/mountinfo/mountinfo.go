// Package mountinfo reads the kernel's table of mounts, /proc/self/mountinfo
// (proc(5)), so that state kept on disk can be checked against what is
// really mounted.
package mountinfo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrInvalidFormat means a line of mountinfo does not have the documented
// fields.
var ErrInvalidFormat = errors.New("mountinfo: invalid format")

// Mount is one line of mountinfo. Paths are unescaped (\040 becomes a space).
type Mount struct {
	ID, ParentID int
	Major, Minor uint32 // st_dev of files in the mount
	Root         string // path in the file system that is the mount's root
	Mountpoint   string
	Options      string // per-mount options (ro, nosuid, ...)
	FSType       string // "ext4", "fuse.hostcompute", ...
	Source       string // device or source, "none" when empty
	SuperOptions string // per-superblock options
}

// Read parses /proc/self/mountinfo.
func Read() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse parses mountinfo text.
func Parse(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		m, err := parseLine(string(b))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrInvalidFormat, line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseLine parses "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseLine(s string) (Mount, error) {
	var m Mount
	left, right, ok := strings.Cut(s, " - ")
	if !ok {
		return m, errors.New(`no " - " separator`)
	}
	f := strings.Fields(left)
	if len(f) < 6 {
		return m, fmt.Errorf("%d fields before the separator, want at least 6", len(f))
	}
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return m, fmt.Errorf("mount ID %q", f[0])
	}
	if m.ParentID, err = strconv.Atoi(f[1]); err != nil {
		return m, fmt.Errorf("parent ID %q", f[1])
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return m, fmt.Errorf("device %q", f[2])
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return m, fmt.Errorf("device %q", f[2])
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	m.Root = Unescape(f[3])
	m.Mountpoint = Unescape(f[4])
	m.Options = f[5]
	r := strings.Fields(right)
	if len(r) < 2 {
		return m, fmt.Errorf("%d fields after the separator, want at least 2", len(r))
	}
	m.FSType = r[0]
	m.Source = Unescape(r[1])
	if len(r) > 2 {
		m.SuperOptions = r[2]
	}
	return m, nil
}

// Unescape undoes the kernel's octal escapes of space, tab, newline and
// backslash (\040, \011, \012, \134).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
