package wcowunion

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// ErrBadTombstones means a layer's tombstones.txt cannot be used: no version
// header, or a name that is not a path inside Files/.
var ErrBadTombstones = errors.New("wcowunion: bad tombstones file")

// maxTombstoneLine bounds one line of tombstones.txt (a Windows path).
const maxTombstoneLine = 64 << 10

// ParseTombstones reads a tombstones.txt (a version header, then one removed name per
// line, relative to Files with a leading backslash, as winlayer writes it and Windows
// export folders hold it) and returns the names as clean slash-separated relative
// paths. file names the input in errors.
func ParseTombstones(r io.Reader, file string) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxTombstoneLine)
	var (
		names  []string
		line   int
		offset int64
	)
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		text := strings.TrimSuffix(string(raw), "\r")
		start := offset
		offset += int64(len(raw)) + 1
		bad := func(why string) error {
			return fmt.Errorf("%w: %s line %d (byte %d): %s: %q", ErrBadTombstones, file, line, start, why, text)
		}
		if line == 1 {
			if !strings.HasPrefix(strings.TrimPrefix(text, "\uFEFF"), "Version ") {
				return nil, bad("want the version header")
			}
			continue
		}
		if text == "" {
			continue
		}
		name := strings.ReplaceAll(strings.TrimPrefix(text, `\`), `\`, "/")
		if !filepath.IsLocal(name) || name != filepath.Clean(name) || name == "." || strings.ContainsRune(name, 0) {
			return nil, bad("not a path inside Files")
		}
		names = append(names, name)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s line %d (byte %d): %w", ErrBadTombstones, file, line+1, offset, err)
	}
	return names, nil
}
