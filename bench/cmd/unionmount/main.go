// Command unionmount mounts one overlay union for bench's union mount rows and prints
// how long the mount itself took, so that the row can report the mount latency apart
// from process start-up, which both sides pay alike.
//
// Usage:
//
//	unionmount -mode ours|peer -lowers DIR -n N -upper DIR -work DIR -target DIR
//
// The lower layers are DIR/0 (top) to DIR/N-1 (bottom). Mode ours uses
// internal/mount.MountOverlay (one mount(2) whose lower names are relative to
// their common directory when absolute ones overflow the page, else fsopen, one
// fsconfig lowerdir+ per layer, fsmount, move_mount). Mode peer is a bare mount(2) with the lowerdir=...,upperdir=...,
// workdir=... option string: with absolute lower paths when the string fits in one
// page, else (deep stacks) with paths relative to DIR after chdir(DIR), the usual
// workaround; -peer-paths says which it used. The union is left mounted.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/mount"
)

// pageSize is the limit of mount(2)'s data argument: the kernel copies one page.
const pageSize = 4096

func main() {
	mode := flag.String("mode", "", "ours or peer")
	lowers := flag.String("lowers", "", "directory holding the lower layers 0..n-1")
	n := flag.Int("n", 0, "number of lower layers")
	upper := flag.String("upper", "", "upper directory")
	work := flag.String("work", "", "work directory")
	target := flag.String("target", "", "mount point")
	flag.Parse()
	if *n < 1 || *lowers == "" || *upper == "" || *work == "" || *target == "" {
		fmt.Fprintln(os.Stderr, "unionmount: -lowers, -n, -upper, -work and -target are required")
		os.Exit(2)
	}
	abs := make([]string, *n)
	rel := make([]string, *n)
	for i := range abs {
		rel[i] = strconv.Itoa(i)
		abs[i] = filepath.Join(*lowers, rel[i])
	}
	var (
		took  time.Duration
		err   error
		paths = "absolute"
	)
	switch *mode {
	case "ours":
		start := time.Now()
		err = mount.MountOverlay(*target, mount.Overlay{Lower: abs, Upper: *upper, Work: *work, Source: "bench"})
		took = time.Since(start)
	case "peer":
		opts := "lowerdir=" + strings.Join(abs, ":") + ",upperdir=" + *upper + ",workdir=" + *work
		if len(opts) >= pageSize {
			paths = "relative"
			if err = os.Chdir(*lowers); err == nil {
				opts = "lowerdir=" + strings.Join(rel, ":") + ",upperdir=" + *upper + ",workdir=" + *work
			}
		}
		if err == nil && len(opts) >= pageSize {
			err = fmt.Errorf("option string of %d bytes does not fit in a page even with relative paths", len(opts))
		}
		if err == nil {
			start := time.Now()
			err = unix.Mount("bench", *target, "overlay", 0, opts)
			took = time.Since(start)
		}
	default:
		fmt.Fprintf(os.Stderr, "unionmount: -mode %q: want ours or peer\n", *mode)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "unionmount: %s: %v\n", *mode, err)
		os.Exit(1)
	}
	fmt.Printf("mount_ns=%d paths=%s\n", took.Nanoseconds(), paths)
}
