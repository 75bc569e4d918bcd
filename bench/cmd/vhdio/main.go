// Command vhdio is bench's side of the random I/O row: it opens a dynamic VHDX with
// pkg/vhd and runs the same commands that the peer feeds to qemu-io.
//
// Usage:
//
//	vhdio SCRIPT IMAGE
//
// SCRIPT holds one command a line, in qemu-io's syntax and only these forms:
//
//	write -P PATTERN OFFSET 4k
//	read -P PATTERN OFFSET 4k
//
// write fills LENGTH bytes at OFFSET with the byte PATTERN; read reads them and
// checks that every byte is PATTERN, as qemu-io's read -P does. The disk is closed
// at the end, which flushes it to stable storage, as qemu-io does when it exits.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

type op struct {
	write   bool
	pattern byte
	off     int64
	n       int64
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: vhdio SCRIPT IMAGE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "vhdio: %v\n", err)
		os.Exit(1)
	}
}

func run(script, image string) error {
	ops, maxLen, err := parse(script)
	if err != nil {
		return err
	}
	d, err := vhd.Open(image, false)
	if err != nil {
		return err
	}
	buf := make([]byte, maxLen)
	for i, o := range ops {
		p := buf[:o.n]
		if o.write {
			for j := range p {
				p[j] = o.pattern
			}
			if _, err := d.WriteAt(p, o.off); err != nil {
				d.Close()
				return fmt.Errorf("command %d: write at %d: %w", i+1, o.off, err)
			}
			continue
		}
		if _, err := d.ReadAt(p, o.off); err != nil {
			d.Close()
			return fmt.Errorf("command %d: read at %d: %w", i+1, o.off, err)
		}
		for j, b := range p {
			if b != o.pattern {
				d.Close()
				return fmt.Errorf("command %d: byte %d at %d is %#x, want %#x", i+1, j, o.off, b, o.pattern)
			}
		}
	}
	return d.Close()
}

// parse reads the commands of script and returns them with the largest length.
func parse(script string) ([]op, int64, error) {
	f, err := os.Open(script)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var (
		ops    []op
		maxLen int64
	)
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 5 || (fields[0] != "write" && fields[0] != "read") || fields[1] != "-P" {
			return nil, 0, fmt.Errorf("%s:%d: want \"write|read -P PATTERN OFFSET LENGTH\"", script, line)
		}
		pattern, err := strconv.ParseUint(fields[2], 0, 8)
		if err != nil {
			return nil, 0, fmt.Errorf("%s:%d: pattern: %w", script, line, err)
		}
		off, err := strconv.ParseInt(fields[3], 0, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("%s:%d: offset: %w", script, line, err)
		}
		n, err := parseLength(fields[4])
		if err != nil {
			return nil, 0, fmt.Errorf("%s:%d: length: %w", script, line, err)
		}
		ops = append(ops, op{write: fields[0] == "write", pattern: byte(pattern), off: off, n: n})
		maxLen = max(maxLen, n)
	}
	return ops, maxLen, sc.Err()
}

// parseLength reads a length with an optional k or m suffix (KiB, MiB), as qemu-io.
func parseLength(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid length %q", s)
	}
	return n * mult, nil
}
