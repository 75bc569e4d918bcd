package main

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostcompute/hostcompute/internal/sampletar"
)

// sampleInput is a generated Windows layer tar in the cache, with what it holds.
type sampleInput struct {
	Path     string `json:"-"`
	Size     int64  `json:"size"`
	Entries  int    `json:"entries"`
	Files    int    `json:"files"`   // regular files, alternate streams not counted
	Streams  int    `json:"streams"` // alternate data stream entries ("file:stream")
	Dirs     int    `json:"dirs"`
	Links    int    `json:"links"`    // hard links
	Symlinks int    `json:"symlinks"` // symbolic links and junctions
	Data     int64  `json:"data"`     // bytes of file and stream contents
}

func (in *sampleInput) String() string {
	return fmt.Sprintf("%s (%s): %d entries: %d files, %d alternate streams, %d directories, %d hard links, %d reparse points; %s of data",
		filepath.Base(in.Path), sizeIEC(in.Size), in.Entries, in.Files, in.Streams, in.Dirs, in.Links, in.Symlinks, sizeIEC(in.Data))
}

// sampleTar returns the layer tar sampletar.Write makes for o, generating it into the
// cache unless it is already there. The file name holds the options and a digest of
// the generator's source, so that a changed generator makes new inputs; inputs of an
// older generator with the same options are removed.
func (env *Env) sampleTar(ctx context.Context, o sampletar.Options) (*sampleInput, error) {
	if len(o.Whiteouts) > 0 {
		return nil, errors.New("sample tars with whiteouts are not cached") // not in the name
	}
	key := fmt.Sprintf("sampletar-s%d-f%d-b%d-d%d-l%d", o.Seed, o.Files, o.Bytes, o.PerDir, o.LargeFiles)
	for _, f := range []struct {
		on bool
		s  string
	}{{o.Hives, "h"}, {o.UtilityVM, "u"}, {o.Unicode, "n"}} {
		if f.on {
			key += f.s
		}
	}
	path := filepath.Join(env.Cache, key+"-g"+env.generatorDigest()+".tar")
	meta := strings.TrimSuffix(path, ".tar") + ".json"
	in := &sampleInput{Path: path}
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, in) == nil {
		if st, err := os.Stat(path); err == nil && st.Size() == in.Size {
			return in, nil
		}
	}

	old, _ := filepath.Glob(filepath.Join(env.Cache, key+"-g*"))
	for _, f := range old {
		os.Remove(f)
	}
	env.logf("generating %s (%s of data, %d files) into %s", filepath.Base(path), sizeIEC(o.Bytes), o.Files, env.Cache)
	start := time.Now()
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(&ctxWriter{ctx: ctx, w: f}, 1<<20)
	err = sampletar.Write(bw, o)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("generating %s: %w", path, err)
	}
	if err := scanTar(ctx, tmp, in); err != nil {
		return nil, fmt.Errorf("reading back %s: %w", path, err)
	}
	b, _ := json.MarshalIndent(in, "", "\t")
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	env.logf("generated %s in %s", in, seconds(time.Since(start)))
	return in, nil
}

// generatorDigest is a short digest of internal/sampletar's source files.
func (env *Env) generatorDigest() string {
	files, _ := filepath.Glob(filepath.Join(env.Root, "internal", "sampletar", "*.go"))
	h := sha256.New()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "unknown"
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:8]
}

// scanTar counts the entries of the tar at path into in.
func scanTar(ctx context.Context, path string, in *sampleInput) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	in.Size = st.Size()
	tr := tar.NewReader(f) // f is seekable: bodies are skipped, not read
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		in.Entries++
		switch h.Typeflag {
		case tar.TypeReg:
			if strings.Contains(filepath.Base(h.Name), ":") {
				in.Streams++
			} else {
				in.Files++
			}
			in.Data += h.Size
		case tar.TypeDir:
			in.Dirs++
		case tar.TypeLink:
			in.Links++
		case tar.TypeSymlink:
			in.Symlinks++
		}
	}
}

// ctxWriter fails writes once ctx is done, to stop a long generation.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
