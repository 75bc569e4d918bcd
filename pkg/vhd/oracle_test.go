package vhd

import (
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"testing"
)

// requireQemu skips the test when qemu-img or qemu-io is not installed.
func requireQemu(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package qemu-utils, see scripts/install-deps.sh): oracle test skipped", tool)
		}
	}
}

// run runs a command and fails the test if it exits non-zero.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

type qemuImageInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	ClusterSize     int64  `json:"cluster-size"`
}

func qemuInfo(t *testing.T, args ...string) qemuImageInfo {
	t.Helper()
	out := run(t, "qemu-img", append([]string{"info", "--output=json"}, args...)...)
	var info qemuImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info output: %v\n%s", err, out)
	}
	return info
}

// newRand returns a seeded generator and logs the seed.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("random seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	r := newRand(t)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// requireTool skips the test when tool is not installed.
func requireTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed (Debian package %s, see scripts/install-deps.sh): oracle test skipped", tool, pkg)
	}
}

// sevenZipRaw extracts the virtual disk of a VHD with 7-Zip, run in the file's
// directory so that relative parent locators resolve as they do for this package.
func sevenZipRaw(t *testing.T, dir, name string) []byte {
	t.Helper()
	cmd := exec.Command("7zz", "e", "-tVHD", "-so", name)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("7zz e -tVHD -so %s: %v", name, err)
	}
	return out
}
