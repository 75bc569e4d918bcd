// Command hcsshim-tar2ext4-verity runs hcsshim's tar2ext4 library with the options its
// command line does not offer: dm-verity (AppendDMVerity), the maximum disk size, and
// ConvertAndComputeRootDigest, the root hash confidential-container policies use. It
// takes the flags of hcsshim's cmd/tar2ext4 too, and the dm-verity flag under the
// spellings hcs tar2ext4 accepts, so benchmarks can give both the same arguments. It is
// an oracle for hostcompute's tests and benchmarks, built into bin/peers by
// scripts/install-go-peers.sh; it is not part of hostcompute.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"
)

func main() {
	input := flag.String("i", "", "input tar (default standard input)")
	output := flag.String("o", "", "output image")
	overlay := flag.Bool("overlay", false, "ConvertWhiteout")
	convertSlash := flag.Bool("convert-slash", false, "ConvertBackslash")
	vhd := flag.Bool("vhd", false, "AppendVhdFooter")
	inline := flag.Bool("inline", false, "InlineData")
	var verity bool
	for _, name := range []string{"dm-verity", "dmverity", "verity"} {
		flag.BoolVar(&verity, name, false, "AppendDMVerity")
	}
	maxSize := flag.Int64("max-disk-size", 0, "MaximumDiskSize in bytes (0: library default)")
	digest := flag.Bool("root-digest", false, "print ConvertAndComputeRootDigest of the input and write nothing")
	flag.Parse()

	in := io.Reader(os.Stdin)
	if *input != "" {
		f, err := os.Open(*input)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		in = f
	}
	if *digest {
		h, err := tar2ext4.ConvertAndComputeRootDigest(in)
		if err != nil {
			fail(err)
		}
		fmt.Println(h)
		return
	}
	if *output == "" {
		fail(fmt.Errorf("-o is required"))
	}
	out, err := os.Create(*output)
	if err != nil {
		fail(err)
	}
	var opts []tar2ext4.Option
	if *overlay {
		opts = append(opts, tar2ext4.ConvertWhiteout)
	}
	if *convertSlash {
		opts = append(opts, tar2ext4.ConvertBackslash)
	}
	if *vhd {
		opts = append(opts, tar2ext4.AppendVhdFooter)
	}
	if *inline {
		opts = append(opts, tar2ext4.InlineData)
	}
	if verity {
		opts = append(opts, tar2ext4.AppendDMVerity)
	}
	if *maxSize != 0 {
		opts = append(opts, tar2ext4.MaximumDiskSize(*maxSize))
	}
	if err := tar2ext4.Convert(in, out, opts...); err != nil {
		fail(err)
	}
	_, _ = io.Copy(io.Discard, in) // the tar trailer, as cmd/tar2ext4 does
	if err := out.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
