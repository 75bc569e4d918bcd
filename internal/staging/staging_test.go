package staging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestNameOwner(t *testing.T) {
	n := Name("/x/disk.vhdx")
	if filepath.Dir(n) != "/x" || !strings.HasPrefix(filepath.Base(n), ".disk.vhdx.hcs-tmp-") {
		t.Fatalf("Name = %s", n)
	}
	pid, start, ok := Owner(n)
	me, mine := self()
	if !ok || pid != me || start != mine || mine == 0 {
		t.Fatalf("Owner(%s) = %d %d %v, want %d %d", n, pid, start, ok, me, mine)
	}
	if !Alive(pid, start) {
		t.Error("this process is not alive")
	}
	if Alive(pid, start+1) {
		t.Error("a process with another start time is alive")
	}
	for _, bad := range []string{"disk.vhdx", ".disk.hcs-tmp-x-1-a", ".d.hcs-tmp-1-2", "d.hcs-tmp-1-2-3"} {
		if _, _, ok := Owner(bad); ok {
			t.Errorf("Owner(%q) ok", bad)
		}
	}
}

// TestClean: the leftovers of a dead process go, those of a live one (this
// test) and other files stay.
func TestClean(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true command:", err)
	}
	dead := filepath.Join(dir, ".a.hcs-tmp-"+itoa(cmd.Process.Pid)+"-1-00")
	mine := Name(filepath.Join(dir, "b"))
	other := filepath.Join(dir, "c")
	for _, p := range []string{dead, mine, other} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".d.hcs-tmp-"+itoa(cmd.Process.Pid)+"-1-01"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := Clean(dir)
	if err != nil || len(removed) != 2 {
		t.Fatalf("Clean = %v, %v", removed, err)
	}
	for _, p := range []string{mine, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if removed, err := RemoveOwn(dir); err != nil || len(removed) != 1 || removed[0] != mine {
		t.Fatalf("RemoveOwn = %v, %v", removed, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
