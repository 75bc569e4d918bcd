package wclayer

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// The transport format is the folder that Windows' ExportLayer writes and ImportLayer
// reads:
//
//   - every file under Files\ and UtilityVM\ is a file holding its attributes (4 bytes,
//     little endian) followed by its Win32 backup stream;
//   - every directory is a real directory (holding its children) plus a sibling file
//     "<dir>.$wcidirs$" with the directory's attributes and backup stream;
//   - files under Hives\ are plain files;
//   - hard-linked files are hard-linked transport files;
//   - tombstones.txt lists the removed names relative to Files.
//
// Windows keeps an entry's four times in the transport file's own timestamps. Linux
// cannot set a creation or change time, so this package also stores the 40-byte
// FILE_BASIC_INFO in the extended attribute user.hcs.basicinfo, and falls back to the
// file's modification and access times where that attribute is missing.
const (
	wcidirsSuffix  = ".$wcidirs$"
	basicInfoXattr = "user.hcs.basicinfo"
	tombstonesHead = "\uFEFFVersion 1.0"
)

// ErrBadTransport: the transport folder does not follow the format.
var ErrBadTransport = errors.New("wclayer: malformed transport folder")

// ExportLayer writes the layer at path as a transport folder at exportFolderPath,
// which must not exist or be empty. The folder appears only when complete.
// For a read-only layer parentLayerPaths are accepted for compatibility; the folder
// form does not need them.
//
// A read-write (scratch) layer exports its changes to its parents (parentLayerPaths,
// immediate parent first, or its layerchain.json when none are given): the Files/ of
// its volume, the upper directory of its union, read as winlayer.UpperReader reads
// it. Deletions made through the union are tombstones; files copied up from a parent
// keep the parent's Windows metadata with their new content and times; new files get
// the metadata Windows gives files a container creates. A layer that is not active is
// activated for the time of the export; one prepared is read as it is (stop writing
// to it first). A scratch disk whose changes cannot be read gives an error, never an
// empty export.
func ExportLayer(ctx context.Context, path string, exportFolderPath string, parentLayerPaths []string) (err error) {
	dest, err := filepath.Abs(exportFolderPath)
	if err != nil {
		return err
	}
	if ents, err := os.ReadDir(dest); err == nil && len(ents) > 0 {
		return fmt.Errorf("exporting layer %s to %s: %w", path, dest, winlayer.ErrLayerExists)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	staging := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".hcs-staging-"+hex.EncodeToString(rnd[:]))
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	r, err := openLayerSource(ctx, path, parentLayerPaths)
	if err != nil {
		return fmt.Errorf("wclayer: exporting layer %s: %w", path, err)
	}
	defer r.Close()
	tomb, err := os.Create(filepath.Join(staging, winlayer.TombstonesFile))
	if err != nil {
		return err
	}
	defer tomb.Close()
	tw := bufio.NewWriter(tomb)
	tw.WriteString(tombstonesHead + "\n")
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if e.Removed {
			if !strings.HasPrefix(e.Name, winlayer.FilesDir+"/") {
				return &winlayer.EntryError{Layer: path, Entry: e.Name, Op: "export", Err: fmt.Errorf("%w: the transport format records removals under Files only", winlayer.ErrNotSupported)}
			}
			tw.WriteString(strings.ReplaceAll(e.Name[len(winlayer.FilesDir):], "/", `\`) + "\n")
			continue
		}
		if err := exportEntry(staging, r, e); err != nil {
			return &winlayer.EntryError{Layer: path, Entry: e.Name, Op: "export", Err: err}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := tomb.Close(); err != nil {
		return err
	}
	if err := unix.Rename(staging, dest); err != nil {
		return fmt.Errorf("exporting layer %s: %w", path, err)
	}
	return nil
}

func exportEntry(root string, r entrySource, e *winlayer.Entry) error {
	p := filepath.Join(root, e.Name)
	isHive := strings.HasPrefix(e.Name, winlayer.HivesDir+"/")
	switch {
	case e.IsDir() && len(e.Reparse) == 0:
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := writeTransportFile(p+wcidirsSuffix, r, e); err != nil {
			return err
		}
		return setBasicInfo(p, &e.Info)
	case e.LinkTarget != "":
		return os.Link(filepath.Join(root, e.LinkTarget), p)
	case isHive:
		rc, err := r.OpenData()
		if err != nil {
			return err
		}
		defer rc.Close()
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, rc); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return setBasicInfo(p, &e.Info)
	default:
		// Files, and directory reparse points, whose placeholder directory Windows
		// recreates empty at import.
		if e.IsDir() {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			return writeTransportFile(p+wcidirsSuffix, r, e)
		}
		return writeTransportFile(p, r, e)
	}
}

func writeTransportFile(p string, r entrySource, e *winlayer.Entry) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = binary.Write(bw, binary.LittleEndian, e.Info.FileAttributes)
	if err == nil {
		err = writeBackupStream(bw, r, e)
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return setBasicInfo(p, &e.Info)
}

// setBasicInfo records the entry's times and attributes on a transport file.
func setBasicInfo(p string, info *winfile.BasicInfo) error {
	b, err := info.MarshalBinary()
	if err != nil {
		return err
	}
	if err := unix.Lsetxattr(p, basicInfoXattr, b, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
		return err
	}
	ts := []unix.Timespec{
		unix.NsecToTimespec(info.LastAccessTime.Time().UnixNano()),
		unix.NsecToTimespec(info.LastWriteTime.Time().UnixNano()),
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// basicInfoOf reads a transport file's basic information: the extended attribute if
// present, else the Linux times.
func basicInfoOf(p string, fi fs.FileInfo) winfile.BasicInfo {
	var info winfile.BasicInfo
	b := make([]byte, winfile.BasicInfoSize)
	if n, err := unix.Lgetxattr(p, basicInfoXattr, b); err == nil && n == len(b) {
		if info.UnmarshalBinary(b) == nil {
			return info
		}
	}
	mt := winfile.NewFiletime(fi.ModTime())
	info.CreationTime, info.LastWriteTime, info.ChangeTime, info.LastAccessTime = mt, mt, mt, mt
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.LastAccessTime = winfile.NewFiletime(time.Unix(st.Atim.Sec, st.Atim.Nsec))
	}
	if fi.IsDir() {
		info.FileAttributes = winfile.AttrDirectory
	}
	return info
}

// ImportLayer imports the transport folder at importFolderPath as a new layer at path,
// whose parents (immediate parent first) must already exist. The layer appears only
// when the import is complete.
func ImportLayer(ctx context.Context, path string, importFolderPath string, parentLayerPaths []string) error {
	src, err := filepath.Abs(importFolderPath)
	if err != nil {
		return err
	}
	w, err := NewLayerWriter(ctx, path, parentLayerPaths)
	if err != nil {
		return err
	}
	lw := w.(*backupLayerWriter)
	if err := importTransport(ctx, src, lw); err != nil {
		lw.endFile()
		lw.w.Abort()
		return err
	}
	return w.Close()
}

func importTransport(ctx context.Context, src string, lw *backupLayerWriter) error {
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	walkErr := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		top := strings.SplitN(rel, "/", 2)[0]
		if top != winlayer.FilesDir && top != winlayer.HivesDir && top != winlayer.UtilityVMDir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // tombstones.txt and the top-level .$wcidirs$ files
		}
		if strings.HasSuffix(rel, wcidirsSuffix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fail := func(err error) error {
			return fmt.Errorf("importing %s from transport folder %s: %w", rel, src, err)
		}
		if d.IsDir() {
			info := basicInfoOf(p, fi)
			if f, err := os.Open(p + wcidirsSuffix); err == nil {
				defer f.Close()
				// The .$wcidirs$ file carries the times: a directory's own change as
				// its children are written.
				if wfi, err := f.Stat(); err == nil {
					info = basicInfoOf(p+wcidirsSuffix, wfi)
				}
				return importStream(lw, rel, info, f, fail)
			}
			if err := lw.Add(rel, &info); err != nil {
				return fail(err)
			}
			return nil
		}
		if !fi.Mode().IsRegular() {
			return fail(fmt.Errorf("%w: %s is not a regular file", ErrBadTransport, rel))
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			k := inode{uint64(st.Dev), st.Ino}
			if first, ok := links[k]; ok {
				if err := lw.AddLink(rel, first); err != nil {
					return fail(err)
				}
				return nil
			}
			links[k] = rel
		}
		info := basicInfoOf(p, fi)
		f, err := os.Open(p)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if top == winlayer.HivesDir {
			// Hives are plain files: their data is the file.
			if err := lw.endFile(); err != nil {
				return fail(err)
			}
			info.FileAttributes &^= winfile.AttrDirectory
			if err := lw.w.Add(&winlayer.Entry{Name: rel, Info: info, Size: fi.Size()}); err != nil {
				return fail(err)
			}
			if _, err := io.Copy(lw.w, f); err != nil {
				return fail(err)
			}
			return nil
		}
		return importStream(lw, rel, info, f, fail)
	})
	if walkErr != nil {
		return walkErr
	}
	return importTombstones(src, lw)
}

// importStream reads a transport file (attributes, then a backup stream) into the
// writer as entry name.
func importStream(lw *backupLayerWriter, name string, info winfile.BasicInfo, f *os.File, fail func(error) error) error {
	var attrs uint32
	if err := binary.Read(f, binary.LittleEndian, &attrs); err != nil {
		return fail(fmt.Errorf("%w: no attribute prefix: %v", ErrBadTransport, err))
	}
	info.FileAttributes = attrs
	if err := lw.Add(name, &info); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(lw, bufio.NewReaderSize(f, 256<<10)); err != nil {
		return fail(err)
	}
	if err := lw.endFile(); err != nil {
		return fail(err)
	}
	return nil
}

func importTombstones(src string, lw *backupLayerWriter) error {
	f, err := os.Open(filepath.Join(src, winlayer.TombstonesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if line == 1 {
			if text != tombstonesHead {
				return fmt.Errorf("%w: %s line 1 is %q, want the version header", ErrBadTransport, winlayer.TombstonesFile, text)
			}
			continue
		}
		if text == "" {
			continue
		}
		if !strings.HasPrefix(text, `\`) {
			return fmt.Errorf("%w: %s line %d: %q does not start with a backslash", ErrBadTransport, winlayer.TombstonesFile, line, text)
		}
		if err := lw.Remove(winlayer.FilesDir + text); err != nil {
			return fmt.Errorf("%s line %d: %w", winlayer.TombstonesFile, line, err)
		}
	}
	return sc.Err()
}
