package cim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostcompute/hostcompute/host"
	"github.com/hostcompute/hostcompute/internal/basedisk"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// CimLayerWriter writes a container image layer as a CIM, with hcsshim's calls.
// Names are layer-relative Windows paths such as `Files\Windows\System32\x.dll`
// ('/' works too). It is not safe for concurrent use.
//
// One writer at a time writes a layer: the writer holds an exclusive lock on
// the layer folder from NewCimLayerWriter to Close or Abort, and a second
// writer of the same layer fails at once with an error matching ErrLayerBusy
// (and fs.ErrExist), leaving the first one's work alone.
type CimLayerWriter struct {
	ctx        context.Context
	path       string
	parents    []string
	w          *cimfs.Writer
	createdDir bool
	lock       *os.File // the layer folder, flock'ed while writing
	current    string   // the file added last, for AddAlternateStream
	v          *winlayer.Validator
	err        error
	closed     bool

	// What Close processes: the base layer's registry hives, teed to the
	// layer folder as they are written (name in the image → side file), and
	// names seen that need processing.
	tee        *os.File
	hives      map[string]string // hive (SYSTEM, ...) → its name in the image
	hiveFiles  []string          // side files made, to remove on failure
	sawHives   bool              // the layer has a Hives folder
	sawLayout  bool              // the layer has a layout file
	deltaHives []string          // Hives/*_DELTA of a child layer
	uvmHive    bool              // UtilityVM/Files/Windows/System32/config/SOFTWARE
}

// ErrClosed: the writer was used after Close.
var ErrClosed = errors.New("cim: layer writer closed")

// ErrLayerBusy: another writer is writing the layer. It matches fs.ErrExist.
var ErrLayerBusy = fmt.Errorf("cim: the layer is being written by another writer: %w", fs.ErrExist)

// ErrHiveMergeUnsupported is returned by Close for a child layer that carries
// delta registry hives (Hives/*_DELTA): Windows merges each into its parent's
// base hive to make the layer's Hives/*_BASE, which needs a registry hive
// writer that this project does not have. The layer's CIM is written and
// complete (the delta hives are in it); its Hives/*_BASE are not made. It
// matches errors.ErrUnsupported.
var ErrHiveMergeUnsupported = fmt.Errorf("cim: merging delta registry hives into the parent's base hives needs a registry hive writer, which this project does not have: %w", errors.ErrUnsupported)

// ErrUtilityVMBootUnsupported is returned by Close for a layer with a
// utility VM image (UtilityVM/Files/Windows/System32/config/SOFTWARE): Windows
// reads the image's build from that hive and, for builds that boot from a
// CIM, edits the utility VM's BCD store and SYSTEM hive and makes its
// template disks. Those edits need registry and BCD writers this project
// does not have. The layer's CIM is written and complete. It matches
// errors.ErrUnsupported.
var ErrUtilityVMBootUnsupported = fmt.Errorf("cim: setting up a utility VM to boot from the CIM edits its BCD store and registry hives, which this project does not have: %w", errors.ErrUnsupported)

// NewCimLayerWriter starts writing the layer at path. parentLayerPaths are the parent
// layers, immediate parent first; the immediate parent must be a CIM layer in the same
// cim-layers folder, and the new image forks it. It fails if path already has a CIM.
func NewCimLayerWriter(ctx context.Context, path string, parentLayerPaths []string) (_ *CimLayerWriter, err error) {
	if IsCimLayer(path) {
		return nil, &fs.PathError{Op: "create CIM layer", Path: GetCimPathFromLayer(path), Err: cimfs.ErrExists}
	}
	parent, err := parentCim(path, parentLayerPaths)
	if err != nil {
		return nil, err
	}
	dir := GetCimDirFromLayer(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cimfs.CleanStale(dir)
	cw := &CimLayerWriter{ctx: ctx, path: path, parents: parentLayerPaths, hives: map[string]string{}}
	if err := cw.lockLayer(); err != nil {
		return nil, err
	}
	// Under the lock: a writer that finished meanwhile has its CIM in place.
	if IsCimLayer(path) {
		cw.unlock()
		return nil, &fs.PathError{Op: "create CIM layer", Path: GetCimPathFromLayer(path), Err: cimfs.ErrExists}
	}
	// A failed writer of another layer removes the cim-layers folder it made
	// when it is empty again; when that happens between MkdirAll and Create,
	// the folder is made again. Once Create has staged in it, it is not empty.
	for try := 0; ; try++ {
		cw.w, err = cimfs.Create(dir, GetCimNameFromLayer(path), parent)
		if err == nil || try == 10 || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		if _, serr := os.Stat(dir); !errors.Is(serr, fs.ErrNotExist) {
			break
		}
		if merr := os.MkdirAll(dir, 0o755); merr != nil {
			break
		}
	}
	if err != nil {
		cw.removeDir()
		return nil, err
	}
	cw.v = winlayer.NewValidator(len(parentLayerPaths) == 0, cw.parentKind)
	cw.v.SetFreeSpace(func() uint64 { return freeSpace(dir) })
	return cw, nil
}

// parentKind answers the Validator from the forked parent tree: the Validator asks
// only about names this layer has not touched yet.
func (cw *CimLayerWriter) parentKind(name string) winlayer.Kind {
	found, isDir, reparse := cw.w.Lookup(name)
	switch {
	case !found:
		return winlayer.KindNone
	case isDir && reparse:
		return winlayer.KindDirLink
	case isDir:
		return winlayer.KindDir
	case reparse:
		return winlayer.KindLink
	}
	return winlayer.KindFile
}

// entryErr wraps a failure of the Validator or the image writer with the layer and
// entry it concerns.
func (cw *CimLayerWriter) entryErr(op, name string, err error) error {
	var ee *winlayer.EntryError
	if errors.As(err, &ee) {
		return err
	}
	return &winlayer.EntryError{Layer: cw.path, Entry: name, Op: op, Err: err}
}

// lockLayer creates the layer folder if it is missing and takes its lock.
func (cw *CimLayerWriter) lockLayer() error {
	for attempt := 0; ; attempt++ {
		err := os.Mkdir(cw.path, 0o755)
		created := err == nil
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		f, err := os.Open(cw.path)
		if err != nil {
			return err
		}
		if err := flock(f); err != nil {
			f.Close()
			if errors.Is(err, errWouldBlock) {
				return &fs.PathError{Op: "create CIM layer", Path: cw.path, Err: ErrLayerBusy}
			}
			return err
		}
		// The folder locked must still be the one at path: a writer that
		// failed may have removed the folder it created before we locked it.
		if same, err := sameDir(f, cw.path); err != nil || !same {
			f.Close()
			if attempt < 3 {
				continue
			}
			return &fs.PathError{Op: "create CIM layer", Path: cw.path, Err: ErrLayerBusy}
		}
		if st, err := f.Stat(); err != nil || !st.IsDir() {
			f.Close()
			return &fs.PathError{Op: "create CIM layer", Path: cw.path, Err: fmt.Errorf("not a folder: %w", fs.ErrExist)}
		}
		cw.lock, cw.createdDir = f, created
		return nil
	}
}

func sameDir(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

func (cw *CimLayerWriter) unlock() {
	if cw.lock != nil {
		cw.lock.Close()
		cw.lock = nil
	}
}

// removeDir undoes what the writer did to the layer folder, and unlocks it.
func (cw *CimLayerWriter) removeDir() {
	if cw.tee != nil {
		cw.tee.Close()
		cw.tee = nil
	}
	for _, f := range cw.hiveFiles {
		os.Remove(f)
	}
	if cw.createdDir {
		// Only this writer has used the folder (it holds the lock).
		os.RemoveAll(cw.path)
	}
	cw.unlock()
}

func (cw *CimLayerWriter) ready() error {
	if cw.closed {
		return ErrClosed
	}
	if cw.err != nil {
		return cw.err
	}
	return cw.ctx.Err()
}

func (cw *CimLayerWriter) fail(err error) error {
	if cw.err == nil {
		cw.err = err
	}
	return err
}

// Add adds a file or directory with its metadata; for a file, fileSize bytes of data
// follow through Write. securityDescriptor, extendedAttributes (a
// FILE_FULL_EA_INFORMATION chain) and reparseData may be nil.
func (cw *CimLayerWriter) Add(name string, fileInfo *winfile.BasicInfo, fileSize int64, securityDescriptor []byte, extendedAttributes []byte, reparseData []byte) error {
	if err := cw.ready(); err != nil {
		return err
	}
	if fileInfo == nil {
		return cw.fail(fmt.Errorf("cim: Add %s: nil file information", name))
	}
	e := &winlayer.Entry{Name: toSlash(name), Info: *fileInfo, Size: fileSize, SecurityDescriptor: securityDescriptor, Reparse: reparseData}
	if e.IsDir() {
		e.Size = 0
	}
	if len(extendedAttributes) > 0 {
		eas, err := winfile.DecodeExtendedAttributes(extendedAttributes)
		if err != nil {
			return cw.fail(cw.entryErr("add", name, fmt.Errorf("extended attributes: %w", err)))
		}
		e.ExtendedAttributes = eas
	}
	clean, err := cw.v.Add(e)
	if err != nil {
		return cw.fail(cw.entryErr("add", name, err))
	}
	h := &cimfs.Header{Name: clean, Info: *fileInfo, Size: fileSize, SecurityDescriptor: securityDescriptor,
		ExtendedAttributes: extendedAttributes, ReparseData: reparseData, NoDataStream: e.NoDataStream}
	if h.Info.FileAttributes&winfile.AttrDirectory != 0 {
		h.Size, h.NoDataStream = 0, false
	}
	if err := cw.w.Add(h); err != nil {
		return cw.fail(err)
	}
	cw.current = clean
	if err := cw.note(clean, h); err != nil {
		return cw.fail(err)
	}
	return nil
}

// hivesConfig is where a Windows image keeps its registry hives.
const hivesConfig = "Files/Windows/System32/config/"

// note records what Close must process about an entry just added, and starts
// teeing a base layer's registry hive to the layer folder.
func (cw *CimLayerWriter) note(name string, h *cimfs.Header) error {
	cw.closeTee()
	lower := strings.ToLower(name)
	isDir := h.Info.FileAttributes&winfile.AttrDirectory != 0
	switch {
	case lower == "hives":
		cw.sawHives = true
	case lower == strings.ToLower(basedisk.LayoutFile):
		cw.sawLayout = true
	case strings.HasPrefix(lower, "hives/") && strings.HasSuffix(lower, "_delta") && !isDir:
		cw.deltaHives = append(cw.deltaHives, name)
	case lower == "utilityvm/files/windows/system32/config/software":
		cw.uvmHive = true
	}
	if len(cw.parents) > 0 || isDir || h.ReparseData != nil || !strings.HasPrefix(lower, strings.ToLower(hivesConfig)) {
		return nil
	}
	base := name[len(hivesConfig):]
	for _, hv := range basedisk.Hives {
		if strings.EqualFold(base, hv[0]) {
			// Windows keeps a base layer's hives beside the CIM too, so that
			// child layers and containers can use them: write the data to the
			// layer folder as it comes.
			p := filepath.Join(cw.path, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			cw.hiveFiles = append(cw.hiveFiles, p)
			cw.tee = f
			cw.hives[hv[0]] = name
		}
	}
	return nil
}

func (cw *CimLayerWriter) closeTee() error {
	if cw.tee == nil {
		return nil
	}
	err := cw.tee.Sync()
	if cerr := cw.tee.Close(); err == nil {
		err = cerr
	}
	cw.tee = nil
	return err
}

// AddAlternateStream starts the alternate data stream name, "<file>:<stream>" (with or
// without ":$DATA"), of the file added last; size bytes follow through Write.
func (cw *CimLayerWriter) AddAlternateStream(name string, size uint64) error {
	if err := cw.ready(); err != nil {
		return err
	}
	file, stream, ok := strings.Cut(toSlash(name), ":")
	if !ok {
		return cw.fail(fmt.Errorf("cim: AddAlternateStream %s: %w: no stream name", name, cimfs.ErrInvalidName))
	}
	if clean, err := winlayer.CleanName(file); err != nil || !strings.EqualFold(clean, cw.current) {
		return cw.fail(fmt.Errorf("cim: AddAlternateStream %s: not the file added last (%s)", name, cw.current))
	}
	if size > 1<<48 {
		return cw.fail(fmt.Errorf("cim: AddAlternateStream %s: %w", name, cimfs.ErrTooLarge))
	}
	if err := cw.closeTee(); err != nil {
		return cw.fail(err)
	}
	if _, err := cw.v.AddStream(stream, int64(size)); err != nil {
		return cw.fail(cw.entryErr("stream", name, err))
	}
	if err := cw.w.AddStream(stream, int64(size)); err != nil {
		return cw.fail(err)
	}
	return nil
}

// AddLink adds name as a hard link to target, which must already exist in the layer
// or its parents.
func (cw *CimLayerWriter) AddLink(name string, target string) error {
	if err := cw.ready(); err != nil {
		return err
	}
	cw.current = ""
	if err := cw.closeTee(); err != nil {
		return cw.fail(err)
	}
	cname, ctarget, err := cw.v.AddLink(toSlash(name), toSlash(target))
	if err != nil {
		return cw.fail(cw.entryErr("link", name, err))
	}
	if err := cw.w.AddLink(cname, ctarget); err != nil {
		return cw.fail(err)
	}
	return nil
}

// Remove removes name, present in a parent layer, from the layer.
func (cw *CimLayerWriter) Remove(name string) error {
	if err := cw.ready(); err != nil {
		return err
	}
	cw.current = ""
	if err := cw.closeTee(); err != nil {
		return cw.fail(err)
	}
	cname, err := cw.v.Remove(toSlash(name))
	if err != nil {
		return cw.fail(cw.entryErr("remove", name, err))
	}
	if err := cw.w.Remove(cname); err != nil {
		return cw.fail(err)
	}
	return nil
}

// Write writes data of the current stream: the file added last, or the alternate
// stream started last.
func (cw *CimLayerWriter) Write(b []byte) (int, error) {
	if err := cw.ready(); err != nil {
		return 0, err
	}
	n, err := cw.w.Write(b)
	if err != nil {
		return n, cw.fail(err)
	}
	if cw.tee != nil {
		if _, err := cw.tee.Write(b[:n]); err != nil {
			return n, cw.fail(err)
		}
	}
	return n, nil
}

// Close finishes the layer and commits it: after it succeeds the CIM is
// visible; on failure nothing of it is.
//
// Before committing, Close does what the Host Compute Service's CIM import
// does to a layer, where that has a meaning on Linux:
//
//   - a base layer whose image holds the registry hives
//     (Files/Windows/System32/config/{SYSTEM,SOFTWARE,SAM,SECURITY,DEFAULT})
//     gets them in the layer folder too, Hives/*_BASE hard links to them and
//     the layout file ("vhd-with-hives") in both the folder and the CIM, and
//     the container scratch template disks blank-base.vhdx (a dynamic 20 GiB
//     VHDX formatted ext4; Windows formats NTFS) and blank.vhdx, its
//     differencing child. Making the disks needs root (they are attached to be
//     formatted). A base layer without the hives is not a Windows OS image
//     (tool and test layers): it is written as an image only;
//   - a child layer with delta hives (Hives/*_DELTA) needs them merged into
//     its parent's base hives: the CIM is committed and Close returns an error
//     matching ErrHiveMergeUnsupported;
//   - a layer with a utility VM image needs its boot configuration edited:
//     the CIM is committed and Close returns an error matching
//     ErrUtilityVMBootUnsupported.
func (cw *CimLayerWriter) Close(ctx context.Context) error {
	if cw.closed {
		return ErrClosed
	}
	cw.closed = true
	err := cw.err
	if err == nil {
		err = cw.closeTee()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && len(cw.parents) == 0 && len(cw.hives) == len(basedisk.Hives) {
		err = cw.processBaseLayer(ctx)
	}
	if err != nil {
		cw.w.Abort()
		cw.removeDir()
		return err
	}
	if err := cw.w.Close(); err != nil {
		cw.removeDir()
		return err
	}
	cw.unlock()
	var errs []error
	if len(cw.parents) > 0 && len(cw.deltaHives) > 0 {
		errs = append(errs, fmt.Errorf("cim: layer %s written; %s not merged into Hives/*_BASE: %w", cw.path, strings.Join(cw.deltaHives, ", "), ErrHiveMergeUnsupported))
	}
	if cw.uvmHive {
		errs = append(errs, fmt.Errorf("cim: layer %s written; its utility VM is not set up to boot: %w", cw.path, ErrUtilityVMBootUnsupported))
	}
	return errors.Join(errs...)
}

// processBaseLayer makes the base layer's Hives/, layout and template disks
// (see Close), in the layer folder and in the CIM.
func (cw *CimLayerWriter) processBaseLayer(ctx context.Context) error {
	fail := func(err error) error { return fmt.Errorf("cim: processing base layer %s: %w", cw.path, err) }
	if cw.sawHives || cw.sawLayout {
		return fail(fmt.Errorf("the layer tar has its own Hives/ or %s, which a base layer gets from its image: %w", basedisk.LayoutFile, fs.ErrExist))
	}
	// In the folder: Hives/*_BASE links to the hives written beside the CIM,
	// and the layout file.
	if err := basedisk.SetupHives(cw.path); err != nil {
		return fail(err)
	}
	cw.hiveFiles = append(cw.hiveFiles, filepath.Join(cw.path, basedisk.HivesDir), filepath.Join(cw.path, basedisk.LayoutFile))
	for i := range cw.hiveFiles {
		if cw.hiveFiles[i] == filepath.Join(cw.path, basedisk.HivesDir) {
			// removeDir removes files one by one; Hives/ holds links.
			cw.hiveFiles = append(cw.hiveFiles[:i:i], append(hiveLinks(cw.path), cw.hiveFiles[i:]...)...)
			break
		}
	}
	// In the CIM: the same, as Windows' import writes them.
	now := winfile.NewFiletime(time.Now())
	dirInfo := winfile.BasicInfo{CreationTime: now, LastAccessTime: now, LastWriteTime: now, ChangeTime: now, FileAttributes: winfile.AttrDirectory}
	if err := cw.w.Add(&cimfs.Header{Name: basedisk.HivesDir, Info: dirInfo}); err != nil {
		return fail(err)
	}
	for _, hv := range basedisk.Hives {
		if err := cw.w.AddLink(basedisk.HivesDir+"/"+hv[1], cw.hives[hv[0]]); err != nil {
			return fail(err)
		}
	}
	layout, err := os.ReadFile(filepath.Join(cw.path, basedisk.LayoutFile))
	if err != nil {
		return fail(err)
	}
	fileInfo := dirInfo
	fileInfo.FileAttributes = winfile.AttrNormal
	if err := cw.w.Add(&cimfs.Header{Name: basedisk.LayoutFile, Info: fileInfo, Size: int64(len(layout))}); err != nil {
		return fail(err)
	}
	if _, err := cw.w.Write(layout); err != nil {
		return fail(err)
	}
	// The container scratch template.
	base := filepath.Join(cw.path, basedisk.ContainerScratchTemplateBase)
	diff := filepath.Join(cw.path, basedisk.ContainerScratchTemplate)
	cw.hiveFiles = append(cw.hiveFiles, base, diff)
	if err := basedisk.MakeBaseAndDiff(ctx, base, diff, basedisk.Options{Size: BaseScratchTemplateSize, Format: formatExt4}, nil); err != nil {
		return fail(err)
	}
	return nil
}

// hiveLinks are the Hives/*_BASE links SetupHives makes in layerPath.
func hiveLinks(layerPath string) []string {
	var l []string
	for _, hv := range basedisk.Hives {
		l = append(l, filepath.Join(layerPath, basedisk.HivesDir, hv[1]))
	}
	return l
}

// BaseScratchTemplateSize is the size of a base layer's blank-base.vhdx, as
// the Host Compute Service makes it.
const BaseScratchTemplateSize = 20 << 30

// IsWrittenWithLimits reports whether err, from Close, says the layer was
// committed without a step Linux cannot do (ErrHiveMergeUnsupported,
// ErrUtilityVMBootUnsupported) and nothing else went wrong.
func IsWrittenWithLimits(err error) bool {
	if err == nil {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !IsWrittenWithLimits(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, ErrHiveMergeUnsupported) || errors.Is(err, ErrUtilityVMBootUnsupported)
}

// abort discards the layer.
func (cw *CimLayerWriter) abort() {
	if !cw.closed {
		cw.closed = true
		cw.w.Abort()
		cw.removeDir()
	}
}

// formatExt4 formats a new template disk with ext4, through the host engine.
func formatExt4(ctx context.Context, path string) error {
	return host.FormatDiskFile(ctx, path, host.FormatOptions{Filesystem: host.Ext4, AssumeZeroed: true})
}
