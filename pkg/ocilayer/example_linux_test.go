package ocilayer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	"github.com/hostcompute/hostcompute/pkg/ocilayer"
)

func ExampleApply() {
	// Two layers: the second deletes a file and adds another.
	build := func(hdrs ...*tar.Header) *bytes.Buffer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			if err := tw.WriteHeader(h); err != nil {
				log.Fatal(err)
			}
			tw.Write(make([]byte, h.Size))
		}
		tw.Close()
		return &buf
	}
	lower := build(
		&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755},
		&tar.Header{Typeflag: tar.TypeReg, Name: "etc/old.conf", Mode: 0o644, Size: 3},
	)
	upper := build(
		&tar.Header{Typeflag: tar.TypeReg, Name: "etc/.wh.old.conf"},
		&tar.Header{Typeflag: tar.TypeReg, Name: "etc/new.conf", Mode: 0o644, Size: 5},
	)

	root, err := os.MkdirTemp("", "rootfs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	ctx := context.Background()
	for _, l := range []*bytes.Buffer{lower, upper} {
		n, err := ocilayer.Apply(ctx, root, l, ocilayer.WithoutOwnership())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("applied", n, "bytes")
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if rel, _ := filepath.Rel(root, p); rel != "." {
			fmt.Println(rel)
		}
		return err
	})
	// Output:
	// applied 3 bytes
	// applied 5 bytes
	// etc
	// etc/new.conf
}

// Diff turns the upper directory of an unmounted overlay into a layer.
// Compile-only: it needs an overlay's upper directory.
func ExampleDiff() {
	f, err := os.Create("/var/tmp/layer.tar")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := ocilayer.Diff(context.Background(), f, "/var/lib/snapshots/42/upper"); err != nil {
		log.Fatal(err)
	}
}
