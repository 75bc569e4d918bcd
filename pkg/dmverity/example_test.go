package dmverity_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/pkg/dmverity"
)

// Append a dm-verity tree to an image and check it again later.
func Example() {
	dir, err := os.MkdirTemp("", "dmverity-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "layer.img"))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil { // 1 MiB of zeros as the "file system"
		log.Fatal(err)
	}

	info, err := dmverity.Append(f, 1<<20, dmverity.Params{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("levels:", info.Levels, "tree bytes:", info.TreeSize)
	fmt.Println("root:", info.RootHashHex()) // veritysetup format --salt=<64 zeros> gives the same
	fmt.Println("veritysetup verify layer.img layer.img", info.RootHashHex()[:8]+"...", "--hash-offset", info.SuperblockOffset)

	again, err := dmverity.ReadInfo(f, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("verify:", dmverity.Verify(f, again))
	// Output:
	// levels: [2 1] tree bytes: 12288
	// root: bef46122f85025cf37061b16c04e2a19960a5bbcdbb656b5e91ae7927c0ad807
	// veritysetup verify layer.img layer.img bef46122... --hash-offset 1048576
	// verify: <nil>
}
