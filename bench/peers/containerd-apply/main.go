// Command containerd-apply is a bench peer: it applies an uncompressed OCI layer
// tar onto a directory with containerd's archive.Apply, the function containerd's
// unpacker and snapshotters use, with its default options.
//
// Usage:
//
//	containerd-apply TAR DIR
//
// It lives in its own module so that hostcompute does not depend on containerd;
// bench builds it with `go build` in this directory.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/pkg/archive"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: containerd-apply TAR DIR")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "containerd-apply:", err)
		os.Exit(1)
	}
	defer f.Close()
	if _, err := archive.Apply(context.Background(), os.Args[2], bufio.NewReaderSize(f, 1<<20)); err != nil {
		fmt.Fprintln(os.Stderr, "containerd-apply:", err)
		os.Exit(1)
	}
}
