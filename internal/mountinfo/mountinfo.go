// Package mountinfo parses the kernel's table of mounts, /proc/<pid>/mountinfo
// (proc(5)), so that what is mounted is always learned from the kernel and never
// remembered across processes.
//
// A line reads
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// that is: mount ID, parent ID, major:minor, root, mount point, per-mount options,
// any number of optional fields (propagation: shared:N, master:N, ...), a lone "-",
// file system type, source and per-superblock options, separated by single spaces.
// The kernel escapes space, tab, newline and backslash in root, mount point and
// source as three octal digits (\040, \011, \012, \134); Parse decodes them. The
// super options are kept as written: their values escape commas too (\054), so
// decoding the whole field would make it impossible to split.
//
// Parse is strict: anything the kernel does not write (a missing separator, a
// field that is not a number, a backslash not followed by three octal digits) is a
// *ParseError naming the line, the byte offset and the field, matching
// ErrInvalidFormat. It accepts one thing that looks odd but is real: an empty
// source, which mount(2) with an empty source string gives ("- tmpfs  rw").
package mountinfo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrInvalidFormat is matched by every *ParseError.
var ErrInvalidFormat = errors.New("mountinfo: invalid format")

// Mount is one line of mountinfo.
type Mount struct {
	ID, ParentID int
	Major, Minor uint32   // st_dev of files in the mount
	Root         string   // directory of the file system seen at Mountpoint; unescaped
	Mountpoint   string   // where it is mounted, seen from the process's root; unescaped
	Options      string   // per-mount options: "rw,nosuid,relatime"
	Optional     []string // optional fields: "shared:1", "master:4", ...; nil when none
	FSType       string   // "ext4", "overlay", "fuse.hostcompute", ...
	Source       string   // "/dev/loop3", "none", "hostcompute:<id>"; unescaped, may be empty
	SuperOptions string   // per-superblock options, as the kernel wrote them (still escaped)
}

// ParseError reports a malformed mountinfo line.
type ParseError struct {
	Line   int    // 1-based line number
	Offset int64  // byte offset in the input of the offending field (of the line for line-level errors)
	Field  string // "mount ID", "separator", "mount point", ...
	Err    error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("mountinfo: line %d, byte %d: %s: %v", e.Line, e.Offset, e.Field, e.Err)
}

// Unwrap gives ErrInvalidFormat and the cause.
func (e *ParseError) Unwrap() []error { return []error{ErrInvalidFormat, e.Err} }

// maxLine bounds one line. The longest the kernel writes are overlays' super options
// listing every lower: 500 lowers (OVL_MAX_STACK) of PATH_MAX paths stay under 2.1 MB.
const maxLine = 4 << 20

// Read parses /proc/self/mountinfo: the mounts of the calling process's namespace.
func Read() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse parses mountinfo text, returning the mounts in table order (a mount comes
// after its parent, and of mounts stacked on one mount point the last is on top).
// Empty lines are skipped. Lines end with "\n" only, as the kernel writes them: a
// carriage return is part of the last field.
func Parse(r io.Reader) ([]Mount, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		out    []Mount
		offset int64
		line   int
		long   []byte // a line longer than br's buffer, assembled
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(chunk) > maxLine {
				return nil, &ParseError{Line: line + 1, Offset: offset, Field: "line",
					Err: fmt.Errorf("longer than %d bytes", maxLine)}
			}
			long = append(long, chunk...)
			continue
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("mountinfo: reading line %d: %w", line+1, err)
		}
		b := chunk
		if long != nil {
			b = append(long, chunk...)
			long = nil
		}
		if len(b) == 0 { // end of input right after a newline
			break
		}
		line++
		text := bytes.TrimSuffix(b, []byte("\n"))
		if len(text) > maxLine {
			return nil, &ParseError{Line: line, Offset: offset, Field: "line",
				Err: fmt.Errorf("longer than %d bytes", maxLine)}
		}
		if len(text) > 0 {
			m, perr := parseLine(string(text), offset)
			if perr != nil {
				perr.Line = line
				return nil, perr
			}
			out = append(out, m)
		}
		offset += int64(len(b))
		if err == io.EOF {
			break
		}
	}
	return out, nil
}

// parseLine parses one line without its newline; offset is the line's place in the
// input, for errors.
func parseLine(s string, offset int64) (Mount, *ParseError) {
	f := strings.Split(s, " ")
	// start[i] is the byte offset of field i in the line.
	start := make([]int64, len(f))
	for i, p := 1, int64(0); i < len(f); i++ {
		p += int64(len(f[i-1])) + 1
		start[i] = p
	}
	bad := func(i int, field, format string, args ...any) (Mount, *ParseError) {
		o := offset
		if i >= 0 {
			o += start[i]
		}
		return Mount{}, &ParseError{Offset: o, Field: field, Err: fmt.Errorf(format, args...)}
	}
	// Six fixed fields, any number of optional fields, "-", then three more.
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 {
		return bad(-1, "separator", `no lone "-" after the 6th of %d space-separated fields`, len(f))
	}
	if len(f) != sep+4 {
		return bad(sep, "separator", `want 3 fields after "-", got %d`, len(f)-sep-1)
	}
	var m Mount
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil || m.ID < 0 {
		return bad(0, "mount ID", "%q is not a mount ID", f[0])
	}
	if m.ParentID, err = strconv.Atoi(f[1]); err != nil || m.ParentID < 0 {
		return bad(1, "parent ID", "%q is not a mount ID", f[1])
	}
	maj, min, ok := strings.Cut(f[2], ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return bad(2, "major:minor", "%q is not major:minor", f[2])
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	if m.Root, err = unescape(f[3], false); err != nil {
		return bad(3, "root", "%v", err)
	}
	if m.Mountpoint, err = unescape(f[4], false); err != nil {
		return bad(4, "mount point", "%v", err)
	}
	if m.Options = f[5]; m.Options == "" {
		return bad(5, "options", "empty")
	}
	for i := 6; i < sep; i++ {
		if f[i] == "" {
			return bad(i, "optional fields", "empty field")
		}
		m.Optional = append(m.Optional, f[i])
	}
	if m.FSType = f[sep+1]; m.FSType == "" {
		return bad(sep+1, "fstype", "empty")
	}
	if m.Source, err = unescape(f[sep+2], true); err != nil {
		return bad(sep+2, "source", "%v", err)
	}
	// Checked, not decoded: see the package documentation.
	if _, err = unescape(f[sep+3], false); err != nil {
		return bad(sep+3, "super options", "%v", err)
	}
	m.SuperOptions = f[sep+3]
	return m, nil
}

// unescape decodes the kernel's octal escapes (\ooo). A backslash not followed by
// three octal digits is an error: the kernel never writes one, so the line was cut
// or is not mountinfo.
func unescape(s string, emptyOK bool) (string, error) {
	if s == "" && !emptyOK {
		return "", errors.New("empty")
	}
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("incomplete escape %q at byte %d of the field", s[i:], i)
		}
		v := 0
		for _, d := range []byte(s[i+1 : i+4]) {
			if d < '0' || d > '7' {
				return "", fmt.Errorf("bad escape %q at byte %d of the field", s[i:i+4], i)
			}
			v = v*8 + int(d-'0')
		}
		if v > 0xff {
			return "", fmt.Errorf("bad escape %q at byte %d of the field", s[i:i+4], i)
		}
		b = append(b, byte(v))
		i += 3
	}
	return string(b), nil
}

// Under returns the mounts in ms whose mount point is dir or below it, in table
// order. dir must be clean and absolute; "/foo" does not hold "/foobar".
func Under(ms []Mount, dir string) []Mount {
	var out []Mount
	for _, m := range ms {
		if within(m.Mountpoint, dir) {
			out = append(out, m)
		}
	}
	return out
}

// Containing returns the mount that holds path, clean and absolute: the one with
// the deepest mount point at or above it, the topmost of those stacked there.
func Containing(ms []Mount, path string) (Mount, bool) {
	var best Mount
	found := false
	for _, m := range ms {
		if within(path, m.Mountpoint) && (!found || len(m.Mountpoint) >= len(best.Mountpoint)) {
			best, found = m, true
		}
	}
	return best, found
}

// within says whether p is dir or below it.
func within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// Lookup returns the mounts of the calling process whose mount point is path, in
// table order (the last one is on top), or none. path is made absolute and its
// symbolic links resolved first, as the kernel shows mount points resolved.
func Lookup(path string) ([]Mount, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	ms, err := Read()
	if err != nil {
		return nil, err
	}
	var out []Mount
	for _, m := range ms {
		if m.Mountpoint == p {
			out = append(out, m)
		}
	}
	return out, nil
}
