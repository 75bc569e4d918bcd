// Command mklinuxtar writes a generated OCI Linux layer tar to standard output, for
// the peak-memory rows of tar2ext4: many directories and files whose data adds up to
// -bytes, a few large files among them, symlinks and hard links, all written as it
// goes (nothing of the tar is kept). The file data is pseudo-random (ChaCha8 from
// the seed), so that no block of it is all zeros.
package main

import (
	"archive/tar"
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"
)

func main() {
	seed := flag.Uint64("seed", 1, "generator seed")
	files := flag.Int("files", 1000, "number of regular files")
	bytes := flag.Int64("bytes", 32<<20, "total bytes of file data")
	large := flag.Int("large", 2, "how many files are large (together half the data)")
	flag.Parse()
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if err := write(w, *seed, *files, *bytes, *large); err == nil {
		err = w.Flush()
	} else {
		fmt.Fprintln(os.Stderr, "mklinuxtar:", err)
		os.Exit(1)
	}
}

const perDir = 64 // files per leaf directory, leaf directories per middle one

func write(out io.Writer, seed uint64, files int, total int64, large int) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rng := rand.New(rand.NewChaCha8(key))
	// Data comes from one random buffer, read at a random offset per file.
	pool := make([]byte, 4<<20)
	rand.NewChaCha8(key).Read(pool)
	large = min(large, files)
	largeBytes := int64(0)
	if large > 0 {
		largeBytes = total / 2 / int64(large)
	}
	small := files - large
	smallMean := int64(0)
	if small > 0 {
		smallMean = (total - largeBytes*int64(large)) / int64(small)
	}
	mtime := time.Unix(1700000000, 0)
	tw := tar.NewWriter(out)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		} else if h.Mode == 0 {
			h.Mode = 0o644
		}
		return tw.WriteHeader(h)
	}
	if err := hdr(&tar.Header{Name: "usr/", Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	var left = total
	for i := range files {
		if i%(perDir*perDir) == 0 {
			if err := hdr(&tar.Header{Name: fmt.Sprintf("usr/d%04d/", i/(perDir*perDir)), Typeflag: tar.TypeDir}); err != nil {
				return err
			}
		}
		dir := fmt.Sprintf("usr/d%04d/e%02d", i/(perDir*perDir), i/perDir%perDir)
		if i%perDir == 0 {
			if err := hdr(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir}); err != nil {
				return err
			}
		}
		var size int64
		switch {
		case i == files-1:
			size = max(left, 0)
		case i%(files/max(large, 1)+1) == 1 && large > 0:
			size = largeBytes
			large--
		default:
			size = smallMean/2 + rng.Int64N(smallMean+1)
		}
		size = min(size, max(left, 0))
		left -= size
		name := fmt.Sprintf("%s/file-%07d.bin", dir, i)
		if err := hdr(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Uid: 1000, Gid: 1000}); err != nil {
			return err
		}
		for off := rng.Int64N(int64(len(pool))); size > 0; off = 0 {
			n := min(size, int64(len(pool))-off)
			if _, err := tw.Write(pool[off : off+n]); err != nil {
				return err
			}
			size -= n
		}
		switch i % 97 {
		case 3:
			if err := hdr(&tar.Header{Name: name + ".lnk", Typeflag: tar.TypeSymlink, Linkname: "file-" + fmt.Sprint(i) + ".bin", Mode: 0o777}); err != nil {
				return err
			}
		case 5:
			if err := hdr(&tar.Header{Name: name + ".hard", Typeflag: tar.TypeLink, Linkname: name}); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
