// Command mksample writes a generated OCI Windows layer tar to standard output, for the
// demo and for trying the CLI: every kind of Windows metadata the format carries, in the
// order Windows producers use. See package sampletar.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hostcompute/hostcompute/internal/sampletar"
)

func main() {
	var o sampletar.Options
	var whiteouts string
	flag.Uint64Var(&o.Seed, "seed", 1, "generator seed")
	flag.IntVar(&o.Files, "files", 1000, "number of regular files")
	flag.Int64Var(&o.Bytes, "bytes", 32<<20, "total bytes of file data")
	flag.IntVar(&o.LargeFiles, "large", 2, "how many files are large")
	flag.BoolVar(&o.Hives, "hives", true, "add Hives/ with delta hives")
	flag.BoolVar(&o.UtilityVM, "uvm", false, "add UtilityVM/Files with hard links into Files/")
	flag.BoolVar(&o.Unicode, "unicode", true, "add non-ASCII and long names")
	flag.StringVar(&whiteouts, "whiteouts", "", "comma-separated names the layer removes (needs a parent layer)")
	flag.Parse()
	if whiteouts != "" {
		o.Whiteouts = strings.Split(whiteouts, ",")
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if err := sampletar.Write(w, o); err == nil {
		err = w.Flush()
	} else {
		fmt.Fprintln(os.Stderr, "mksample:", err)
		os.Exit(1)
	}
}
