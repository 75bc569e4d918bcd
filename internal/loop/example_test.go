package loop_test

import (
	"log"

	"github.com/hostcompute/hostcompute/internal/loop"
)

// Attach the ext4 part of a fixed VHD read-only, leaving out its 512-byte
// footer. Needs root, so it only compiles.
func ExampleAttach() {
	const size = 64 << 20 // file size, footer included
	d, err := loop.Attach("layer.vhd", loop.Options{
		ReadOnly:  true,
		SizeLimit: size - 512,
		AutoClear: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	log.Printf("mount %s", d.Path())
}

// Remove the devices a crashed run left attached to a disk.
func ExampleFind() {
	devs, err := loop.Find("/var/lib/hostcompute/sandbox.img")
	if err != nil {
		log.Fatal(err)
	}
	for _, dev := range devs {
		if err := loop.DetachPath(dev); err != nil {
			log.Print(err)
		}
	}
}
