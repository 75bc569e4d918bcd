package dmverity

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestHcsshimGolden rebuilds the superblock and tree hcsshim v0.13.0 wrote for
// the same data (testdata/README.md) with Params{Hcsshim: true} and hcsshim's
// UUID, and compares the bytes and the root hash.
func TestHcsshimGolden(t *testing.T) {
	for _, tc := range []struct {
		seed, blocks int64
		root         string
	}{
		{21, 1, "72d04bb023f54e7ed1658775df92e049f4eb685b7c8e79978ab5fe9289116b09"},
		{22, 128, "ef2647dafb01a3a475caa907170b628e9aa210c282b3c0cbf310fa0878da3a59"},
		{23, 129, "429cab109a6eb8ed2a5398c81a30bf1178d5b2316fd8e0895a295d2efda7825b"},
		{24, 300, "718e44bbe366826ff84d49ccc7968f4bb032063aecffcbda699ec33590c2bb18"},
	} {
		name := fmt.Sprintf("hcsshim-v0.13.0-seed%d-%dblocks.verity", tc.seed, tc.blocks)
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			sb, err := ParseSuperblock(want)
			if err != nil {
				t.Fatalf("hcsshim's superblock: %v", err)
			}
			size := tc.blocks * BlockSize
			path := writeData(t, size, uint64(tc.seed))
			info := appendFile(t, path, size, Params{Hcsshim: true, UUID: sb.UUID})
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[size:], want) {
				t.Errorf("superblock and tree (%d bytes) differ from hcsshim's (%d bytes)", len(got)-int(size), len(want))
			}
			if info.RootHashHex() != tc.root {
				t.Errorf("root %s, hcsshim's %s", info.RootHashHex(), tc.root)
			}
		})
	}
}
