package ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hostcompute/hostcompute/pkg/ext4"
)

// Build an image of a small layer into a file.
func ExampleBuild() {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: time.Unix(1700000000, 0)})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/hostname", Mode: 0o644, Size: 4, ModTime: time.Unix(1700000000, 0)})
	tw.Write([]byte("box\n"))
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "var/.wh.cache", Mode: 0o644, ModTime: time.Unix(1700000000, 0)})
	tw.Close()

	f, err := os.CreateTemp("", "layer-*.ext4")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	res, err := ext4.Build(context.Background(), f, &layer, ext4.WithConvertWhiteouts())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes, %d blocks, %d of %d inodes used\n", res.Size, res.Blocks, res.Inodes-res.FreeInodes, res.Inodes)
	// Output: 40960 bytes, 10 blocks, 15 of 16 inodes used
}
