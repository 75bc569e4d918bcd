package vhd_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// Create a dynamic disk, write to it, and read it back through a differencing
// child.
func Example() {
	dir, err := os.MkdirTemp("", "vhd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	base := filepath.Join(dir, "base.vhd")
	d, err := vhd.Create(base, vhd.CreateOptions{
		Type:      vhd.Dynamic,
		Size:      64 << 20,
		UniqueID:  [16]byte{1},
		Timestamp: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := d.WriteAt([]byte("hello from the base"), 1<<20); err != nil {
		log.Fatal(err)
	}
	if err := d.Close(); err != nil {
		log.Fatal(err)
	}

	child, err := vhd.Create(filepath.Join(dir, "child.vhd"), vhd.CreateOptions{Type: vhd.Differencing, Parent: base})
	if err != nil {
		log.Fatal(err)
	}
	defer child.Close()
	if _, err := child.WriteAt([]byte("HELLO"), 1<<20); err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 19)
	if _, err := child.ReadAt(buf, 1<<20); err != nil {
		log.Fatal(err)
	}
	fmt.Println(child.Type(), child.Size(), string(buf))
	// Output: differencing 67108864 HELLO from the base
}
