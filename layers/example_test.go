package layers_test

import (
	"context"
	"fmt"
	"log"

	"github.com/hostcompute/hostcompute/layers"
)

// Mount two Linux layers (ext4 images with a VHD footer, as tar2ext4 -vhd writes
// them) under a scratch disk that is made on first use, run something in the root
// file system, and release it all. It needs root, so it has no output to check.
func ExampleMountLCOWLayers() {
	ctx := context.Background()
	ls := &layers.LCOWLayers{
		// Top-most first.
		Layers: []*layers.LCOWLayer{
			{VHDPath: "/var/lib/images/app/layer.vhd"},
			{VHDPath: "/var/lib/images/base/layer.vhd"},
		},
		ScratchVHDPath: "/var/lib/containers/c1/sandbox.vhdx",
	}
	rootfs, scratch, closer, err := layers.MountLCOWLayers(ctx, "c1", ls, "/run/containers/c1", nil,
		layers.WithScratchSize(8<<30))
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		// Unmounts the union, the layers and the scratch, and detaches their
		// loop devices, last acquired first.
		if err := closer.Release(ctx); err != nil {
			log.Print(err)
		}
	}()
	fmt.Println("root file system:", rootfs, "writable layer under", scratch)
}

// Union the Files/ folders of Windows layer folders, with the scratch folder taking
// the writes.
func ExampleMountWCOWLayers() {
	ctx := context.Background()
	folders := []string{"/layers/app", "/layers/base", "/layers/c1-scratch"}
	path, closer, err := layers.MountWCOWLayers(ctx, "c1", folders, "", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer closer.Release(ctx)
	fmt.Println("container files at", path)
}
