package winlayer

import (
	"errors"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// FuzzValidator drives the Windows layer rules with arbitrary operations, one per
// line: "F name" (file), "D name" (directory), "J name" (junction), "L name>target"
// (hard link), "R name" (removal), "S name" (alternate stream of the last entry); a
// first byte of 'c' makes a child layer whose parent holds Files/p (file), Files/pd
// (directory) and Files/pj (junction). Properties: accepted names are clean; an
// accepted name is refused when given again (in any case); nothing is accepted below
// a file or reparse point the layer or its parent holds; refusals are of the
// documented classes.
func FuzzValidator(f *testing.F) {
	f.Add("b\nD Files\nF Files/a\nF Files/a\nS :s\nJ Files/j\nF Files/j/x\nL Files/b>Files/a\nR Files/a")
	f.Add("c\nF Files/p/x\nF Files/pj/x\nL Files/l>Files/p\nR Files/pd\nF Files/pd/y\nL Files/m>Files/pd/z\nF Files/A\nF Files/a")
	f.Add("c\nR Files/pj\nF Files/pj/x\nR Files/p\nD Files/p\nF Files/p/q")
	f.Add("c\nF ../x\nF C:\\x\nF Files/CON\nR Files\nR Files/x\nR Files/x\nF Files/./y")
	junction, _ := winfile.NewLinkReparsePoint(`C:\`, true).Encode()
	f.Fuzz(func(t *testing.T, ops string) {
		child := strings.HasPrefix(ops, "c")
		parent := func(n string) Kind {
			switch n {
			case "Files", "Files/pd":
				return KindDir
			case "Files/p":
				return KindFile
			case "Files/pj":
				return KindDirLink
			}
			return KindNone
		}
		v := NewValidator(!child, parent)
		nonDir := map[string]bool{"Files/p": child, "Files/pj": child}
		accepted := map[string]bool{}
		for _, line := range strings.Split(ops, "\n") {
			if len(line) < 2 {
				continue
			}
			op, arg := line[0], line[2:]
			var name string
			var err error
			switch op {
			case 'F', 'D', 'J':
				e := &Entry{Name: arg}
				switch op {
				case 'D':
					e.Info.FileAttributes = winfile.AttrDirectory
				case 'J':
					e.Info.FileAttributes = winfile.AttrDirectory | winfile.AttrReparsePoint
					e.Reparse = junction
				}
				name, err = v.Add(e)
				if err == nil {
					key := foldName(name)
					if accepted[key] {
						t.Fatalf("%s accepted twice", name)
					}
					accepted[key] = true
					nonDir[name] = op != 'D' // a directory may replace a parent's file
					if _, err2 := v.Add(&Entry{Name: name}); err2 == nil {
						t.Fatalf("%s accepted again", name)
					}
				}
			case 'L':
				n, target, _ := strings.Cut(arg, ">")
				name, _, err = v.AddLink(n, target)
				if err == nil {
					nonDir[name] = true
				}
			case 'R':
				name, err = v.Remove(arg)
			case 'S':
				_, err = v.AddStream(arg, 1)
				continue
			default:
				continue
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidName) && !errors.Is(err, ErrInsecurePath) && !errors.Is(err, ErrOutsideLayer) &&
					!errors.Is(err, ErrCaseCollision) && !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrParentNotDirectory) &&
					!errors.Is(err, ErrLinkTarget) && !errors.Is(err, ErrBaseLayerWhiteout) {
					t.Fatalf("%q: error %v of no documented class", line, err)
				}
				// The Validator is used once per failed layer: its callers stop at the
				// first refusal, so go on with a fresh one.
				v = NewValidator(!child, parent)
				accepted = map[string]bool{}
				nonDir = map[string]bool{"Files/p": child, "Files/pj": child}
				continue
			}
			if c, err := CleanName(name); err != nil || c != name {
				t.Fatalf("%q accepted as %q, which is not clean (%v)", line, name, err)
			}
			if op == 'R' {
				delete(nonDir, name) // removed: the layer may make a directory there
				continue
			}
			for p := parentOf(name); p != ""; p = parentOf(p) {
				if nonDir[p] {
					t.Fatalf("%q accepted below %s, a file or reparse point", line, p)
				}
			}
		}
	})
}
