package ocilayer

import (
	"archive/tar"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/internal/nametab"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	paxXattr       = "SCHILY.xattr."
)

// EntryType is the kind of an entry of a Linux layer.
type EntryType uint8

// Entry types.
const (
	TypeOther   EntryType = iota // anything a layer cannot hold (continuation records, sockets, ...)
	TypeReg                      // regular file
	TypeDir                      // directory
	TypeSymlink                  // symbolic link
	TypeLink                     // hard link to Linkname
	TypeChar                     // character device
	TypeBlock                    // block device
	TypeFifo                     // named pipe
	TypeGlobal                   // archive-wide metadata (a PAX global header): describes no file
)

// Entry is one entry of an OCI Linux layer as the rules see it, whatever encoding it
// came in: EntryFromHeader makes one from a tar header.
type Entry struct {
	Name     string // as given, slash separated
	Type     EntryType
	RawType  byte   // the encoding's own type, for messages
	Size     int64  // logical size of a regular file (holes of a sparse file included)
	Linkname string // symlink target or hard-link target
	Sparse   bool   // a sparse file (GNU 'S' or PAX GNU.sparse records)
	Xattrs   []string
}

// EntryFromHeader describes a tar header as an Entry.
func EntryFromHeader(hdr *tar.Header) Entry {
	e := Entry{Name: hdr.Name, RawType: hdr.Typeflag, Size: hdr.Size, Linkname: hdr.Linkname}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont:
		e.Type = TypeReg
	case tar.TypeGNUSparse:
		e.Type, e.Sparse = TypeReg, true
	case tar.TypeDir:
		e.Type = TypeDir
	case tar.TypeSymlink:
		e.Type = TypeSymlink
	case tar.TypeLink:
		e.Type = TypeLink
	case tar.TypeChar:
		e.Type = TypeChar
	case tar.TypeBlock:
		e.Type = TypeBlock
	case tar.TypeFifo:
		e.Type = TypeFifo
	case tar.TypeXGlobalHeader:
		e.Type = TypeGlobal
	}
	for k := range hdr.PAXRecords {
		switch {
		case strings.HasPrefix(k, "GNU.sparse."):
			e.Sparse = true
		case strings.HasPrefix(k, paxXattr):
			e.Xattrs = append(e.Xattrs, k[len(paxXattr):])
		case strings.HasPrefix(k, "LIBARCHIVE.xattr."):
			e.Xattrs = append(e.Xattrs, k[len("LIBARCHIVE.xattr."):])
		}
	}
	slices.Sort(e.Xattrs)
	return e
}

// Action says what a path into a layer does with a checked entry.
type Action uint8

// Actions.
const (
	Create   Action = iota // create Name as the entry says
	Whiteout               // remove Target (a name inherited from a lower layer)
	Opaque                 // make directory Target opaque: hide what lower layers hold below it
	Ignore                 // nothing (archive metadata, AUFS bookkeeping such as .wh..wh.plnk)
)

// Checked is the verdict of the Validator on an accepted entry.
type Checked struct {
	Action Action
	// Name is the cleaned name ("." for the root): relative, slash separated, no
	// "." or ".." components.
	Name string
	// Target is the cleaned hard-link target (Create of a TypeLink), the name a
	// whiteout removes (Whiteout) or the directory made opaque (Opaque).
	Target string
}

// DefaultMaxFileSize is the largest regular file a layer may hold unless a path
// says otherwise: 128 GiB, hcsshim's tar2ext4 limit.
const DefaultMaxFileSize = 128 << 30

// Validator holds the rules of an OCI Linux layer, the same for every path into one
// (ext4 images, Apply, the tars Diff writes): every path passes each entry through a
// Validator before it changes anything, and acts on its verdict.
//
//   - Names: leading slashes are dropped (as GNU tar does) and the name is cleaned; a
//     name that leaves the root ("../x") is ErrInsecurePath, an empty one, one
//     holding NUL or a component over 255 bytes is ErrInvalidEntry. The root itself may only be a directory.
//   - Types: regular files (GNU sparse and contiguous ones too), directories,
//     symlinks (with a target: Linux cannot make an empty one), hard links, devices
//     and fifos; others are ErrUnsupported.
//   - Whiteouts: ".wh..wh..opq" makes its directory opaque; other ".wh..wh." names are
//     AUFS bookkeeping and ignored; ".wh.NAME" removes NAME, which must be a plain
//     name (".wh.", ".wh.." and ".wh..." are ErrInvalidEntry or ErrInsecurePath); it
//     also removes what the same layer put at NAME before it.
//   - Nothing is written below a non-directory this layer created (a symlink, a
//     file, a device): ErrInvalidEntry.
//   - A hard link names a non-directory: with WithoutBase, an earlier entry of this
//     layer that is still there; otherwise it may also be inherited (the path
//     checks it).
//   - Extended attributes in overlayfs's namespaces (trusted.overlay.*,
//     user.overlay.*) are rejected with ErrInvalidEntry: they change what a union
//     shows (opaque hides the lower layers' entries, redirect and metacopy reach into
//     them), which a layer expresses with whiteout entries; neither copying them nor
//     dropping them silently gives the layer's meaning.
//   - Sizes: a regular file is at most the maximum file size (ErrTooLarge).
//
// A later entry of the same name replaces an earlier one, as OCI says. A Validator
// is not safe for concurrent use. It keeps about 20 bytes of memory per name of the
// layer (pkg/internal/nametab); the names themselves spill to a temporary file past
// the first MiB of them.
type Validator struct {
	standalone  bool
	maxFileSize int64
	// names holds every name this layer has had (implied directories too), with
	// its EntryType while it is present and 0 once removed.
	names *nametab.Table
	// chain holds the records of names that are chainName or its ancestors, so
	// that the next entry, usually a sibling, finds them without reading names
	// back.
	chain     []link
	chainName string
}

// link says that chainName[:end] is the name of record rec.
type link struct{ end, rec int }

// ValidatorOption configures a Validator.
type ValidatorOption func(*Validator)

// WithoutBase says the layer is read on its own (an ext4 image of it, or Apply into
// a new directory): hard links must name earlier entries of the layer.
func WithoutBase() ValidatorOption { return func(v *Validator) { v.standalone = true } }

// WithFileSizeLimit sets the largest regular file accepted (default DefaultMaxFileSize).
func WithFileSizeLimit(n int64) ValidatorOption { return func(v *Validator) { v.maxFileSize = n } }

// NewValidator returns a Validator for one layer.
func NewValidator(opts ...ValidatorOption) *Validator {
	v := &Validator{maxFileSize: DefaultMaxFileSize, names: nametab.New()}
	v.names.Insert(v.names.Hash("."), ".", uint8(TypeDir))
	for _, o := range opts {
		o(v)
	}
	return v
}

// CleanName cleans an entry name as the Validator does ("." for the root).
func CleanName(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: empty name or name holding NUL", ErrInvalidEntry)
	}
	n := strings.TrimLeft(name, "/")
	if n == "" {
		return ".", nil
	}
	n = path.Clean(n)
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("%w: %q leaves the root", ErrInsecurePath, name)
	}
	for c := range strings.SplitSeq(n, "/") {
		if len(c) > 255 {
			return "", fmt.Errorf("%w: name component of %d bytes (Linux allows 255)", ErrInvalidEntry, len(c))
		}
	}
	return n, nil
}

func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

func joinName(dir, base string) string {
	if dir == "." {
		return base
	}
	return dir + "/" + base
}

// isPrefix says whether p is s or an ancestor of s.
func isPrefix(p, s string) bool {
	return len(p) <= len(s) && s[:len(p)] == p && (len(p) == len(s) || s[len(p)] == '/')
}

// follow makes the chain that of name, keeping the links it shares.
func (v *Validator) follow(name string) {
	keep := 0
	for _, l := range v.chain {
		if l.end <= len(name) && isPrefix(v.chainName[:l.end], name) {
			v.chain[keep] = l
			keep++
		}
	}
	v.chain, v.chainName = v.chain[:keep], name
}

// find returns the record of name, or -1.
func (v *Validator) find(name string) int {
	onChain := isPrefix(name, v.chainName)
	if onChain {
		for _, l := range v.chain {
			if l.end == len(name) {
				return l.rec
			}
		}
	}
	rec := v.names.Lookup(v.names.Hash(name), func(s string) bool { return s == name })
	if rec >= 0 && onChain {
		v.chain = append(v.chain, link{len(name), rec})
	}
	return rec
}

// get returns the type of a name present in the layer.
func (v *Validator) get(name string) (EntryType, bool) {
	rec := v.find(name)
	if rec < 0 {
		return 0, false
	}
	k := EntryType(v.names.Flags(rec))
	return k, k != 0
}

// set records name as present with type k.
func (v *Validator) set(name string, k EntryType) {
	if rec := v.find(name); rec >= 0 {
		v.names.SetFlags(rec, uint8(k))
		return
	}
	rec := v.names.Insert(v.names.Hash(name), name, uint8(k))
	if isPrefix(name, v.chainName) {
		v.chain = append(v.chain, link{len(name), rec})
	}
}

// del records name as removed.
func (v *Validator) del(name string) {
	if rec := v.find(name); rec >= 0 {
		v.names.SetFlags(rec, 0)
	}
}

// tableErr reports a failure of the name table's spill file.
func (v *Validator) tableErr() error {
	if err := v.names.Err(); err != nil {
		return fmt.Errorf("ocilayer: validator name table: %w", err)
	}
	return nil
}

// Check checks the next entry of the layer and returns what to do with it.
func (v *Validator) Check(e *Entry) (Checked, error) {
	c, err := v.check(e)
	if err == nil {
		err = v.tableErr()
	}
	return c, err
}

func (v *Validator) check(e *Entry) (Checked, error) {
	if e.Type == TypeGlobal {
		return Checked{Action: Ignore}, nil
	}
	name, err := CleanName(e.Name)
	if err != nil {
		return Checked{}, err
	}
	v.follow(name)
	dir, base := splitName(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return v.whiteout(name, dir, base)
	}
	if e.Type == TypeOther {
		return Checked{}, fmt.Errorf("%w: tar entry type %q", ErrUnsupported, e.RawType)
	}
	for _, x := range e.Xattrs {
		if strings.HasPrefix(x, "trusted.overlay.") || strings.HasPrefix(x, "user.overlay.") {
			return Checked{}, fmt.Errorf("%w: extended attribute %s belongs to overlayfs; a layer hides lower entries with whiteout entries", ErrInvalidEntry, x)
		}
	}
	if e.Type == TypeSymlink && (e.Linkname == "" || strings.IndexByte(e.Linkname, 0) >= 0) {
		return Checked{}, fmt.Errorf("%w: symlink with an empty target (Linux cannot make one)", ErrInvalidEntry)
	}
	if e.Type == TypeReg && (e.Size < 0 || e.Size > v.maxFileSize) {
		return Checked{}, fmt.Errorf("%w: file of %d bytes (at most %d)", ErrTooLarge, e.Size, v.maxFileSize)
	}
	if name == "." {
		if e.Type != TypeDir {
			return Checked{}, fmt.Errorf("%w: the root entry is not a directory", ErrInvalidEntry)
		}
		return Checked{Action: Create, Name: name}, nil
	}
	c := Checked{Action: Create, Name: name}
	if e.Type == TypeLink {
		target, err := CleanName(e.Linkname)
		if err != nil {
			return Checked{}, fmt.Errorf("hard link target: %w", err)
		}
		if err := v.linkTarget(target); err != nil {
			return Checked{}, err
		}
		c.Target = target
	}
	if err := v.parents(dir); err != nil {
		return Checked{}, err
	}
	kind := e.Type
	if kind == TypeLink {
		kind, _ = v.get(c.Target)
		if kind == 0 || kind == TypeLink {
			kind = TypeReg // inherited: some non-directory
		}
	}
	old, had := v.get(name)
	if had && old == TypeDir && kind != TypeDir {
		v.forget(name) // a directory replaced: what was below it is gone
	}
	v.set(name, kind)
	return c, nil
}

// parents checks that every ancestor this layer created is a directory, and records
// the missing ones as implied directories.
func (v *Validator) parents(dir string) error {
	for p := dir; p != "."; p, _ = splitName(p) {
		k, ok := v.get(p)
		if !ok {
			v.set(p, TypeDir)
			continue
		}
		if k != TypeDir {
			return fmt.Errorf("%w: %s is not a directory of this layer", ErrNotDir, p)
		}
		return v.parents2(p)
	}
	return nil
}

// parents2 checks the ancestors above a known directory.
func (v *Validator) parents2(dir string) error {
	for p, _ := splitName(dir); p != "."; p, _ = splitName(p) {
		if k, ok := v.get(p); ok && k != TypeDir {
			return fmt.Errorf("%w: %s is not a directory of this layer", ErrNotDir, p)
		} else if !ok {
			v.set(p, TypeDir)
		}
	}
	return nil
}

func (v *Validator) linkTarget(target string) error {
	if target == "." {
		return fmt.Errorf("%w: the root", ErrLinkTarget)
	}
	k, ok := v.get(target)
	switch {
	case ok && k == TypeDir:
		return fmt.Errorf("%w: %s is a directory", ErrLinkTarget, target)
	case ok:
		return nil
	case v.standalone:
		return fmt.Errorf("%w: %s is not an earlier entry of the layer", ErrLinkTarget, target)
	}
	for p, _ := splitName(target); p != "."; p, _ = splitName(p) {
		if k, ok := v.get(p); ok && k != TypeDir {
			return fmt.Errorf("%w: %s is below %s, not a directory of this layer", ErrLinkTarget, target, p)
		}
	}
	return nil
}

func (v *Validator) whiteout(name, dir, base string) (Checked, error) {
	if base == whiteoutOpaque {
		if err := v.parents(dir); err != nil {
			return Checked{}, err
		}
		if k, ok := v.get(dir); ok && k != TypeDir {
			return Checked{}, fmt.Errorf("%w: opaque marker in %s, which is not a directory", ErrInvalidEntry, dir)
		}
		v.set(dir, TypeDir)
		return Checked{Action: Opaque, Name: name, Target: dir}, nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return Checked{Action: Ignore, Name: name}, nil
	}
	target := base[len(whiteoutPrefix):]
	switch target {
	case "..":
		return Checked{}, fmt.Errorf("%w: whiteout %s names the parent directory", ErrInsecurePath, base)
	case "", ".":
		return Checked{}, fmt.Errorf("%w: whiteout %q names no file", ErrInvalidEntry, base)
	}
	if err := v.parents(dir); err != nil {
		return Checked{}, err
	}
	t := joinName(dir, target)
	// A whiteout also removes what the same layer put there before it.
	if k, ok := v.get(t); ok {
		v.del(t)
		if k == TypeDir {
			v.forget(t)
		}
	}
	return Checked{Action: Whiteout, Name: name, Target: t}, nil
}

// forget drops the names below dir.
func (v *Validator) forget(dir string) {
	prefix := dir + "/"
	v.names.Each(func(rec int, n string) {
		if v.names.Flags(rec) != 0 && strings.HasPrefix(n, prefix) {
			v.names.SetFlags(rec, 0)
		}
	})
}
