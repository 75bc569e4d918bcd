// Command hcsshim-tar2ext4 is a bench peer: hcsshim's tar2ext4 command with the
// dm-verity option its library has (tar2ext4.AppendDMVerity) and its command line
// lacks. It takes the flags of hcsshim's cmd/tar2ext4 plus -dmverity (also spelled
// -verity and -dm-verity), and calls tar2ext4.Convert as that command does.
//
// It lives in its own module, pinned to hcsshim v0.13.0, so that hostcompute does
// not depend on hcsshim; bench builds it with `go build` in this directory.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"
)

func main() {
	var (
		input        = flag.String("i", "", "input file (default standard input)")
		output       = flag.String("o", "", "output file")
		overlay      = flag.Bool("overlay", false, "produce overlayfs-compatible layer image")
		convertSlash = flag.Bool("convert-slash", false, "convert backslashes in path names to slashes")
		vhd          = flag.Bool("vhd", false, "add a VHD footer to the end of the image")
		inline       = flag.Bool("inline", false, "write small file data into the inode")
		verity       bool
	)
	for _, name := range []string{"dmverity", "verity", "dm-verity"} {
		flag.BoolVar(&verity, name, false, "append a dm-verity superblock and hash tree (tar2ext4.AppendDMVerity)")
	}
	flag.Parse()
	if flag.NArg() != 0 || *output == "" {
		flag.Usage()
		os.Exit(1)
	}
	if err := run(*input, *output, *overlay, *convertSlash, *vhd, *inline, verity); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(input, output string, overlay, convertSlash, vhd, inline, verity bool) error {
	in := os.Stdin
	if input != "" {
		f, err := os.Open(input)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	out, err := os.Create(output)
	if err != nil {
		return err
	}
	defer out.Close()
	var opts []tar2ext4.Option
	if overlay {
		opts = append(opts, tar2ext4.ConvertWhiteout)
	}
	if convertSlash {
		opts = append(opts, tar2ext4.ConvertBackslash)
	}
	if inline {
		opts = append(opts, tar2ext4.InlineData)
	}
	if verity {
		opts = append(opts, tar2ext4.AppendDMVerity)
	}
	if vhd {
		opts = append(opts, tar2ext4.AppendVhdFooter)
	}
	if err := tar2ext4.Convert(in, out, opts...); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, in) // the tar trailer, as cmd/tar2ext4 does
	return out.Close()
}
