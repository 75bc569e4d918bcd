package mount

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrInvalidMountInfo is matched by every *ParseError.
var ErrInvalidMountInfo = errors.New("mount: invalid mountinfo")

// Info is one line of /proc/<pid>/mountinfo (see proc(5)).
type Info struct {
	ID, Parent   int    // mount ID and parent mount ID
	Major, Minor uint32 // st_dev of the file system
	Root         string // the directory of the file system seen at MountPoint
	MountPoint   string // where it is mounted, relative to the process's root
	Options      string // per-mount options, e.g. "rw,relatime"
	Optional     []string
	FSType       string // file system type, e.g. "overlay", "ext4"
	Source       string // mount source, e.g. "/dev/loop3", or "none"
	SuperOptions string // per-superblock options, e.g. "rw,lowerdir=..."
}

// ParseError reports a malformed mountinfo line.
type ParseError struct {
	Line   int   // 1-based line number
	Offset int64 // byte offset of the line in the input
	Field  string
	Err    error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("mount: mountinfo line %d (byte %d): field %s: %v", e.Line, e.Offset, e.Field, e.Err)
}

func (e *ParseError) Unwrap() []error { return []error{ErrInvalidMountInfo, e.Err} }

// maxLine bounds one mountinfo line; the kernel's lines are far shorter except for
// overlays with many lowers, whose lowerdir options stay below a few pages.
const maxLine = 1 << 20

// ParseMountInfo parses the mountinfo text read from r, in order.
func ParseMountInfo(r io.Reader) ([]Info, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var (
		out    []Info
		offset int64
		line   int
	)
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) > 0 {
			info, err := parseLine(string(b))
			if err != nil {
				err.Line, err.Offset = line, offset
				return nil, err
			}
			out = append(out, info)
		}
		offset += int64(len(b)) + 1
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{Line: line + 1, Offset: offset, Field: "line", Err: err}
	}
	return out, nil
}

func parseLine(s string) (Info, *ParseError) {
	bad := func(field string, format string, args ...any) (Info, *ParseError) {
		return Info{}, &ParseError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	f := strings.Split(s, " ")
	// Six fixed fields, any number of optional fields, "-", then three more.
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 10 || sep < 0 {
		return bad("separator", "want at least 10 space-separated fields with \"-\" after the 6th, got %d fields", len(f))
	}
	if len(f) != sep+4 {
		return bad("super options", "want 3 fields after \"-\", got %d", len(f)-sep-1)
	}
	var in Info
	var err error
	if in.ID, err = strconv.Atoi(f[0]); err != nil || in.ID < 0 {
		return bad("mount ID", "%q is not a mount ID", f[0])
	}
	if in.Parent, err = strconv.Atoi(f[1]); err != nil || in.Parent < 0 {
		return bad("parent ID", "%q is not a mount ID", f[1])
	}
	maj, min, ok := strings.Cut(f[2], ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return bad("major:minor", "%q is not major:minor", f[2])
	}
	in.Major, in.Minor = uint32(ma), uint32(mi)
	if in.Root, err = unescape(f[3]); err != nil {
		return bad("root", "%v", err)
	}
	if in.MountPoint, err = unescape(f[4]); err != nil {
		return bad("mount point", "%v", err)
	}
	in.Options = f[5]
	if sep > 6 {
		in.Optional = append([]string(nil), f[6:sep]...)
	}
	in.FSType = f[sep+1]
	if in.FSType == "" {
		return bad("fstype", "empty")
	}
	if in.Source, err = unescape(f[sep+2]); err != nil {
		return bad("source", "%v", err)
	}
	if in.SuperOptions, err = unescape(f[sep+3]); err != nil {
		return bad("super options", "%v", err)
	}
	return in, nil
}

// unescape decodes the kernel's octal escapes (\ooo) in a mountinfo field. A
// backslash not followed by three octal digits is an error: the kernel never writes
// one, so it means the line was cut or is not mountinfo.
func unescape(s string) (string, error) {
	if s == "" {
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
			return "", fmt.Errorf("incomplete escape at byte %d", i)
		}
		v := 0
		for _, d := range []byte(s[i+1 : i+4]) {
			if d < '0' || d > '7' {
				return "", fmt.Errorf("bad escape %q at byte %d", s[i:i+4], i)
			}
			v = v*8 + int(d-'0')
		}
		if v > 0xff {
			return "", fmt.Errorf("bad escape %q at byte %d", s[i:i+4], i)
		}
		b = append(b, byte(v))
		i += 3
	}
	return string(b), nil
}

// escape is unescape's inverse for the characters the kernel escapes (space, tab,
// newline, backslash); it is used to write mountinfo text in tests.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// format writes in as a mountinfo line, escaping its paths; the inverse of parseLine.
func (in Info) format() string {
	f := []string{
		strconv.Itoa(in.ID), strconv.Itoa(in.Parent),
		fmt.Sprintf("%d:%d", in.Major, in.Minor),
		escape(in.Root), escape(in.MountPoint), in.Options,
	}
	f = append(f, in.Optional...)
	f = append(f, "-", in.FSType, escape(in.Source), escape(in.SuperOptions))
	return strings.Join(f, " ")
}

// Under returns the mounts in infos whose mount point is dir or below it, in table
// order. dir must be clean and absolute.
func Under(infos []Info, dir string) []Info {
	var out []Info
	for _, in := range infos {
		if isUnder(in.MountPoint, dir) {
			out = append(out, in)
		}
	}
	return out
}

func isUnder(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}
