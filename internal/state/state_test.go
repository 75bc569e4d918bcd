package state

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

type rec struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
}

func TestRoot(t *testing.T) {
	t.Setenv(EnvRoot, "")
	if Root() != DefaultRoot {
		t.Errorf("Root() = %q, want %q", Root(), DefaultRoot)
	}
	d := t.TempDir()
	t.Setenv(EnvRoot, d)
	if Dir(Attach) != filepath.Join(d, "attach") {
		t.Errorf("Dir(Attach) = %q", Dir(Attach))
	}
}

func TestRecords(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "record.json")
	if err := ReadRecord(p, 1, &rec{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing record: got %v", err)
	}
	if err := WriteRecord(p, &rec{Version: 1, Name: "a"}); err != nil {
		t.Fatal(err)
	}
	var r rec
	if err := ReadRecord(p, 1, &r); err != nil || r.Name != "a" {
		t.Fatalf("got %+v, %v", r, err)
	}
	if err := ReadRecord(p, 2, &r); !errors.Is(err, ErrBadRecord) {
		t.Errorf("other version: got %v, want ErrBadRecord", err)
	}
	for _, bad := range []string{`{"version":1,`, `{"name":"x"}`, `[]`} {
		os.WriteFile(p, []byte(bad), 0o600)
		if err := ReadRecord(p, 1, &r); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%q: got %v, want ErrBadRecord", bad, err)
		}
		if b, _ := os.ReadFile(p); string(b) != bad {
			t.Errorf("a bad record was changed: %q", b)
		}
	}
}

func TestLocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "entry", "lock")
	if _, err := TryLock(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("TryLock of a missing lock: %v", err)
	}
	l, err := LockFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !Held(p) {
		t.Error("Held: false while held")
	}
	if _, err := TryLock(p); !errors.Is(err, ErrLocked) {
		t.Errorf("TryLock of a held lock: %v, want ErrLocked", err)
	}
	// A waiter whose entry is removed by the holder starts again.
	got := make(chan error, 1)
	go func() {
		l2, err := LockFile(p)
		if err == nil {
			l2.Close()
		}
		got <- err
	}()
	os.Remove(p)
	l.Close()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if Held(p) {
		t.Error("Held: true after every holder closed")
	}
}
