package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/sampletar"
)

// openPTY opens a pseudo-terminal and returns its terminal side.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlockpt: %v", e)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the terminal: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMessagesNameTheRightThing: errors name the user's path as typed, the
// entry and what is wrong with it, and carry the documented exit code.
func TestMessagesNameTheRightThing(t *testing.T) {
	dir := t.TempDir()
	tarb := sampleTar(t)
	layer := filepath.Join(dir, "layer")
	wantCode(t, hcs(t, bytes.NewReader(tarb), "cim", "create", layer), exitOK)
	share := filepath.Join(dir, "share")
	os.Mkdir(share, 0o755)
	plain := writeFile(t, dir, "plain", []byte("x"))
	missing := filepath.Join(dir, "x.cim")
	var file string
	for _, e := range func() []Entry {
		var ents []Entry
		json.Unmarshal([]byte(hcs(t, nil, "-o", "json", "cim", "ls", "-R", layer).stdout), &ents)
		return ents
	}() {
		if e.Type == typeFile {
			file = e.Path
			break
		}
	}

	bomb := func() []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 200 << 30})
		tw.Flush()
		return b.Bytes()
	}()

	for _, c := range []struct {
		name  string
		args  []string
		stdin []byte
		code  int
		want  []string // in stderr
		not   []string
	}{
		{"cim ls of a missing .cim", []string{"cim", "ls", missing}, nil, exitNotFound, []string{missing}, []string{"x.cim.cim"}},
		{"cim ls of a plain folder", []string{"cim", "ls", share}, nil, exitNotFound, []string{share, "not a CIM layer"}, nil},
		{"cim cat of a directory", []string{"cim", "cat", layer, "Files"}, nil, exitFailure, []string{"Files is a directory"}, []string{"file ID"}},
		{"cim ls of a file", []string{"cim", "ls", layer, file}, nil, exitFailure, []string{"is not a directory"}, nil},
		{"cim stat of a missing entry", []string{"cim", "stat", layer, "Files/nope"}, nil, exitNotFound, []string{layer, "Files/nope"}, nil},
		{"layer import onto a plain file", []string{"layer", "import", plain}, tarb, exitExists, []string{plain, "is not a folder"}, []string{"layer already exists"}},
		{"cim create onto a plain file", []string{"cim", "create", plain}, tarb, exitExists, []string{plain, "is not a folder"}, []string{"layer already exists"}},
		{"cim mount at a missing folder", []string{"cim", "mount", "--target", filepath.Join(dir, "nomnt"), layer}, nil, exitNotFound, []string{"nomnt"}, []string{"fusermount"}},
		{"tar2ext4 of a tar bomb", []string{"tar2ext4", "-o", filepath.Join(dir, "bomb.img")}, bomb, exitInvalidInput, []string{"huge"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var in *bytes.Reader
			if c.stdin != nil {
				in = bytes.NewReader(c.stdin)
			}
			var r result
			if in != nil {
				r = hcs(t, in, c.args...)
			} else {
				r = hcs(t, nil, c.args...)
			}
			wantCode(t, r, c.code)
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
			for _, w := range c.not {
				if strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q has %q", r.stderr, w)
				}
			}
		})
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}

	// tar2ext4 refuses a terminal on standard input, as layer import does.
	tty := openPTY(t)
	for _, args := range [][]string{{"tar2ext4", "-o", filepath.Join(dir, "t.img")}, {"layer", "import", filepath.Join(dir, "t")}} {
		var stdout, stderr bytes.Buffer
		a := newApp(tty, &stdout, &stderr)
		if code := a.execute(t.Context(), args); code != exitUsage || !strings.Contains(stderr.String(), "terminal") {
			t.Errorf("%v with a terminal on standard input: exit %d: %s", args, code, stderr.String())
		}
	}
}

// TestCIMCreateWarnings: a child CIM layer with delta hives is written, and
// hcs says what Linux could not do (hive merging) as a warning, exit code 0.
func TestCIMCreateWarnings(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	wantCode(t, hcs(t, bytes.NewReader(sampleTar(t)), "cim", "create", base), exitOK)
	var child bytes.Buffer
	if err := sampletar.Write(&child, sampletar.Options{Seed: 2, Files: 20, Bytes: 64 << 10, Hives: true}); err != nil {
		t.Fatal(err)
	}
	r := hcs(t, bytes.NewReader(child.Bytes()), "-o", "json", "cim", "create", "--parent", base, filepath.Join(dir, "child"))
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, "delta registry hives") {
		t.Errorf("no warning: %q", r.stderr)
	}
	var res cimCreateResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Warnings) != 1 {
		t.Errorf("-o json: %v: %s", err, r.stdout)
	}
	wantCode(t, hcs(t, nil, "cim", "verify", filepath.Join(dir, "child")), exitOK)
}
