package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/compress"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

func TestCIM(t *testing.T) {
	tarb := sampleTar(t)
	_, _, want := reference(t, tarb)
	dir := t.TempDir()
	layer := filepath.Join(dir, "1")
	tarFile := writeFile(t, dir, "l.tar.zst", compressBytes(t, tarb, compress.Zstd))

	r := hcs(t, nil, "cim", "create", "-o", "json", "-f", tarFile, layer)
	wantCode(t, r, exitOK)
	var cr cimCreateResult
	if err := json.Unmarshal([]byte(r.stdout), &cr); err != nil || cr.ImageBytes == 0 || cr.CIM != wcim.GetCimPathFromLayer(layer) {
		t.Fatalf("create result %q: %v", r.stdout, err)
	}
	wantCode(t, hcs(t, nil, "cim", "create", "-f", tarFile, layer), exitExists)

	// Export gives the folder form's bytes, from the layer folder or the .cim path.
	r = hcs(t, nil, "cim", "export", layer)
	wantCode(t, r, exitOK)
	if !bytes.Equal([]byte(r.stdout), want) {
		t.Error("cim export differs from layer export")
	}

	r = hcs(t, nil, "cim", "ls", cr.CIM)
	wantCode(t, r, exitOK)
	if r.stdout != "Files/\nHives/\nUtilityVM/\n" {
		t.Errorf("ls: %q", r.stdout)
	}
	r = hcs(t, nil, "cim", "ls", "-lR", "-o", "json", layer, `files\`)
	wantCode(t, r, exitOK)
	var ents []Entry
	if err := json.Unmarshal([]byte(r.stdout), &ents); err != nil || len(ents) < 50 {
		t.Fatalf("ls json: %v (%d entries)", err, len(ents))
	}
	var file string
	for _, e := range ents {
		if e.Type != typeDir && e.Size > 0 && !strings.Contains(e.Path, "l0") {
			file = e.Path
			break
		}
	}
	r = hcs(t, nil, "cim", "stat", "-o", "json", layer, strings.ToUpper(file))
	wantCode(t, r, exitOK)
	var st cimStat
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.SecurityDescriptor == "" || !st.Added {
		t.Errorf("stat %s: %q %v", file, r.stdout, err)
	}
	r = hcs(t, nil, "cim", "cat", layer, file)
	wantCode(t, r, exitOK)
	if int64(len(r.stdout)) != st.Size {
		t.Errorf("cat gave %d bytes, stat says %d", len(r.stdout), st.Size)
	}
	wantCode(t, hcs(t, nil, "cim", "cat", layer, "Files/nope"), exitNotFound)
	wantCode(t, hcs(t, nil, "cim", "verify", layer), exitOK)

	// A folder layer converts to a CIM and back.
	folderLayer, _, _ := reference(t, tarb)
	wantCode(t, hcs(t, nil, "cim", "create", "--from-folder", folderLayer, filepath.Join(dir, "2")), exitOK)
	back := filepath.Join(dir, "back")
	wantCode(t, hcs(t, nil, "cim", "export", "--to-folder", back, filepath.Join(dir, "2")), exitOK)
	if !bytes.Equal(libraryExport(t, back), want) {
		t.Error("folder → CIM → folder changed the layer")
	}

	// Corruption: exit 3 naming the file and offset.
	b, _ := os.ReadFile(cr.CIM)
	b[3] = 'X'
	os.WriteFile(cr.CIM, b, 0o644)
	r = hcs(t, nil, "cim", "verify", layer)
	wantCode(t, r, exitInvalidInput)
	if !strings.Contains(r.stderr, "1.cim: common header at offset 0: bad magic") {
		t.Errorf("verify message: %q", r.stderr)
	}
	wantCode(t, hcs(t, nil, "cim", "verify", filepath.Join(dir, "none")), exitNotFound)
	wantCode(t, hcs(t, nil, "cim", "create", "-f", tarFile, "--from-folder", folderLayer, filepath.Join(dir, "3")), exitUsage)
}

// TestCIMCreateKilled kills hcs cim create in the middle of a build: no CIM appears,
// and the next build in the same folder removes the dead writer's staging folder.
func TestCIMCreateKilled(t *testing.T) {
	bin := hcsBinary(t)
	tarb := sampleTar(t)
	dir := t.TempDir()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "cim", "create", filepath.Join(dir, "1"))
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	defer cmd.Process.Kill()
	if _, err := pw.Write(tarb[:len(tarb)/2]); err != nil {
		t.Fatal(err)
	}
	cimDir := filepath.Join(dir, wcim.CimLayersDir)
	var staging string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m, _ := filepath.Glob(filepath.Join(cimDir, ".cimfs-staging-*")); len(m) > 0 {
			staging = m[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("create did not start staging")
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	pw.Close()
	// The writer is the command's worker, killed with it (its parent-death
	// signal): wait until it is dead. A worker in a disk write takes its
	// SIGKILL when the write returns, and until then it is a live writer,
	// whose staging the next build rightly leaves alone.
	pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(staging), ".cimfs-staging-"), "-")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + pidStr + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed build's writer %s still runs: %s", pidStr, b)
		}
	}
	if wcim.IsCimLayer(filepath.Join(dir, "1")) {
		t.Fatal("killed build left a CIM")
	}
	if m, _ := filepath.Glob(filepath.Join(cimDir, "region_*")); len(m) != 0 {
		t.Errorf("killed build left region files: %v", m)
	}
	wantCode(t, hcs(t, bytes.NewReader(tarb), "cim", "create", filepath.Join(dir, "2")), exitOK)
	if m, _ := filepath.Glob(filepath.Join(cimDir, ".cimfs-staging-*")); len(m) != 0 {
		t.Errorf("staging of the killed build not cleaned: %v", m)
	}
}
