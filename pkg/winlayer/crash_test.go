//go:build unix

package winlayer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// TestMain lets a test re-run this binary as a writer that is killed midway.
func TestMain(m *testing.M) {
	if dest := os.Getenv("WINLAYER_CRASH_WRITER"); dest != "" {
		crashWriter(dest)
		return
	}
	os.Exit(m.Run())
}

// crashWriter writes entries forever, announcing on stdout once it has started.
func crashWriter(dest string) {
	w, err := NewWriter(context.Background(), dest, nil)
	if err != nil {
		os.Exit(3)
	}
	buf := make([]byte, 64<<10)
	for i := 0; ; i++ {
		e := &Entry{Name: "Files/f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "-" + itoa(i), Size: int64(len(buf)),
			Info: winfile.BasicInfo{FileAttributes: winfile.AttrArchive}}
		if err := w.Add(e); err != nil {
			os.Exit(4)
		}
		w.Write(buf)
		if i == 50 {
			os.Stdout.WriteString("started\n")
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestKilledWriterLeavesNoLayer(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "layer")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WINLAYER_CRASH_WRITER="+dest)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := out.Read(buf); err != nil {
		t.Fatalf("writer did not start: %v", err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Fatalf("killed writer left something at the destination: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || !strings.Contains(ents[0].Name(), stagingMarker) {
		t.Fatalf("expected the dead writer's staging folder, found %v", ents)
	}
	// The next writer in the same folder removes it.
	if err := Create(context.Background(), filepath.Join(dir, "other"), nil); err != nil {
		t.Fatal(err)
	}
	ents, _ = os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "other" {
		t.Fatalf("after the next writer the folder holds %v, want only the new layer", ents)
	}
}

func TestLiveStagingIsKept(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(context.Background(), filepath.Join(dir, "a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	CleanStale(dir)
	if _, err := os.Stat(w.staging); err != nil {
		t.Fatalf("CleanStale removed a live writer's staging folder: %v", err)
	}
	w.Add(&Entry{Name: "Files", Info: winfile.BasicInfo{FileAttributes: winfile.AttrDirectory}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Exists(filepath.Join(dir, "a")); !ok {
		t.Fatal("layer missing after Close")
	}
	if err := w.Close(); err != ErrClosed {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	time.Sleep(0)
}

func TestCleanName(t *testing.T) {
	good := map[string]string{
		"Files":               "Files",
		"Files/":              "Files",
		`Files\a\b.txt`:       "Files/a/b.txt",
		"UtilityVM/Files/x":   "UtilityVM/Files/x",
		"Hives/System_Delta":  "Hives/System_Delta",
		"Files/Ünïcödé ñame":  "Files/Ünïcödé ñame",
		"Files/a.b.c":         "Files/a.b.c",
		"Files/CONSOLE.txt":   "Files/CONSOLE.txt",
		"Files/.wh.-like but": "Files/.wh.-like but",
	}
	for in, want := range good {
		got, err := CleanName(in)
		if err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/Files/a", "Files/../x", "Files//a", "Files/./a", "files/a", "Files/a:b", "Files/nul", "Files/COM1.log", "Files/a.", "Files/a ", "UtilityVM/x", "Other"} {
		if got, err := CleanName(bad); err == nil {
			t.Errorf("CleanName(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFoldName(t *testing.T) {
	if foldName("Files/Ärger/ß/abc") != foldName("FILES/äRGER/ß/ABC") {
		t.Error("case-insensitive names fold differently")
	}
	if foldName("a") == foldName("b") {
		t.Error("different names fold alike")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := &record{entry: Entry{Name: "Files/a", Size: 12, Reparse: []byte{1, 2, 3},
		ExtendedAttributes: []winfile.ExtendedAttribute{{Name: "X", Value: []byte("v"), Flags: 0x80}},
		Streams:            []Stream{{Name: ":s:$DATA", Size: 4, id: 9}},
		RawStreams:         []RawStream{{ID: winfile.StreamObjectID, Data: make([]byte, 64)}}}, sdHash: make([]byte, 32), dataID: 3}
	f.Add(r.encode())
	f.Add((&record{implicit: true, entry: Entry{Name: "Files"}}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		r2, err := decodeRecord(r.encode())
		if err != nil {
			t.Fatalf("re-decoding an encoded record: %v", err)
		}
		if string(r2.encode()) != string(r.encode()) {
			t.Fatal("record encoding is not stable")
		}
	})
}
