package winlayer

import (
	"fmt"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/internal/nametab"
	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// Kind is what a layer holds at a name, as far as the rules of a Windows layer care.
type Kind uint8

// Kinds of names.
const (
	KindNone    Kind = iota // nothing
	KindDir                 // a real directory: entries may be created below it
	KindFile                // a file without a reparse point
	KindLink                // a file that is a reparse point (a file symbolic link, ...)
	KindDirLink             // a directory that is a reparse point (a junction, a directory symbolic link, ...)
)

func (k Kind) String() string {
	switch k {
	case KindDir:
		return "directory"
	case KindFile:
		return "file"
	case KindLink:
		return "reparse point"
	case KindDirLink:
		return "directory reparse point (junction or symbolic link)"
	}
	return "nothing"
}

// EntryKind classifies an entry: a directory with any reparse buffer is a
// KindDirLink, never a parent of other entries.
func EntryKind(e *Entry) Kind {
	switch {
	case e.IsDir() && len(e.Reparse) > 0:
		return KindDirLink
	case e.IsDir():
		return KindDir
	case len(e.Reparse) > 0:
		return KindLink
	}
	return KindFile
}

// ParentLookup tells what the parent layers (the nearest one that holds it) have at a
// layer-relative, slash-separated name, or KindNone.
type ParentLookup func(name string) Kind

// Validator holds the rules of a Windows layer, the same for every way into one (a
// tar imported into a folder, a CIM built from a tar or a folder, hcsshim's
// LayerWriter and CimLayerWriter): each writer passes every call through a
// Validator before it changes anything. The rules are those a Windows host applies
// when it imports the layer, where every name is created with FILE_CREATE:
//
//   - names are layer-relative Windows paths under Files/, Hives/ or UtilityVM/Files/
//     (CleanName);
//   - a name is created once: an exact duplicate is ErrDuplicate, a name that differs
//     only in case from one already in the layer is ErrCaseCollision; a directory
//     created implicitly for the entries below it may still be given explicitly, once;
//   - nothing is created below a file or a reparse point (a symbolic link or junction),
//     of this layer or inherited from a parent: ErrParentNotDirectory;
//   - a base layer (one without parents) removes nothing (ErrBaseLayerWhiteout); a
//     child removes only names it did not add itself, each once;
//   - a hard link names a file (not a directory) added earlier in this layer or held
//     by a parent and not removed by this layer (ErrLinkTarget);
//   - alternate data streams follow their file or directory, each name once;
//   - sizes are within what NTFS holds (and, with SetFreeSpace, what the target
//     filesystem has free); security descriptors, extended attributes and reparse
//     buffers decode.
//
// A Validator is not safe for concurrent use. It keeps about 20 bytes of memory per
// name of the layer (pkg/internal/nametab); the names themselves spill to a
// temporary file past the first MiB of them.
type Validator struct {
	base    bool
	parents ParentLookup
	names   *nametab.Table // by folded name; each record holds the name as first spelled
	// chain holds records known to hold prefixes of chainName exactly as spelled
	// there: the ancestors (and the entry itself) of the last name walked, so that
	// the next entry, usually a sibling, finds them without reading names back.
	chain     []link
	chainName string
	cur       int             // the record alternate streams attach to, or -1
	curName   string          // its name
	streams   map[string]bool // folded stream names of cur
	free      func() uint64   // free bytes where the data goes, or nil
}

// link says that chainName[:end] is the name of record rec.
type link struct{ end, rec int }

// SetFreeSpace gives the Validator a way to learn how many bytes the layer's
// target filesystem has free: a file or stream declaring more than that (from
// 64 MiB on) is refused with ErrTooLarge before any of its data is read.
func (v *Validator) SetFreeSpace(free func() uint64) { v.free = free }

// checkSize applies the size rules to a file or stream of size bytes.
func (v *Validator) checkSize(size int64) error {
	if size < 0 || size > maxFileSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	if size > 64<<20 && v.free != nil {
		if f := v.free(); uint64(size) > f {
			return fmt.Errorf("%w: %d bytes but only %d free on the target filesystem", ErrTooLarge, size, f)
		}
	}
	return nil
}

// The state of a name, in its record's flags: its Kind and these bits.
const (
	kindMask     = 0x7
	flagExplicit = 0x8  // given as an entry (not only implied by names below it)
	flagRemoved  = 0x10 // removed by this layer (and not added again)
	flagOpaque   = 0x20 // added after being removed: the parents' content below it is hidden
)

// vname is the state of one name, read from and stored back into its record.
type vname struct {
	rec      int
	name     string // as first spelled
	kind     Kind
	explicit bool
	removed  bool
	opaque   bool
}

func (v *Validator) load(rec int, name string) *vname {
	f := v.names.Flags(rec)
	return &vname{rec: rec, name: name, kind: Kind(f & kindMask), explicit: f&flagExplicit != 0,
		removed: f&flagRemoved != 0, opaque: f&flagOpaque != 0}
}

func (n *vname) flags() uint8 {
	f := uint8(n.kind)
	if n.explicit {
		f |= flagExplicit
	}
	if n.removed {
		f |= flagRemoved
	}
	if n.opaque {
		f |= flagOpaque
	}
	return f
}

// store writes n's state back to its record, and its name when respell says it
// changed.
func (v *Validator) store(n *vname, respell bool) {
	if respell {
		v.names.SetName(n.rec, n.name)
	}
	v.names.SetFlags(n.rec, n.flags())
}

// lookup finds the record of the folded name key, or returns nil.
func (v *Validator) lookup(key string) *vname {
	var got string
	rec := v.names.Lookup(v.names.Hash(key), func(s string) bool {
		if foldName(s) == key {
			got = s
			return true
		}
		return false
	})
	if rec < 0 {
		return nil
	}
	return v.load(rec, got)
}

// insert records a new name.
func (v *Validator) insert(key string, n *vname) {
	n.rec = v.names.Insert(v.names.Hash(key), n.name, n.flags())
}

// tableErr reports a failure of the name table's spill file.
func (v *Validator) tableErr() error {
	if err := v.names.Err(); err != nil {
		return fmt.Errorf("winlayer: validator name table: %w", err)
	}
	return nil
}

// NewValidator returns the validator of a layer; base says it has no parents.
// parents answers for the parent layers and may be nil when there are none or they
// are not known (then only this layer's own names are checked).
func NewValidator(base bool, parents ParentLookup) *Validator {
	return &Validator{base: base, parents: parents, names: nametab.New(), cur: -1}
}

// walk checks the ancestors of name (a cleaned name) and records the missing ones as
// implicit directories. It returns whether the parents' content at name is still
// visible (no ancestor removed or replaced by this layer).
func (v *Validator) walk(name string) (inherit bool, err error) {
	inherit = true
	// The chain's records keep their prefixes of the last name while this one
	// shares them; past the first prefix that differs, none does.
	k, same := 0, true
	defer func() {
		if err != nil {
			v.chain, v.chainName = v.chain[:0], ""
		} else {
			v.chainName = name
		}
	}()
	for i := strings.IndexByte(name, '/'); i >= 0; {
		p := name[:i]
		var n *vname
		if same && k < len(v.chain) && v.chain[k].end == i && len(v.chainName) > i && v.chainName[:i] == p {
			// Spelled as p: the record was checked when it entered the chain.
			n = v.load(v.chain[k].rec, p)
			k++
		} else {
			if same {
				same = false
				v.chain = v.chain[:k]
			}
			key := foldName(p)
			n = v.lookup(key)
			switch {
			case n != nil && n.removed:
				// Removed earlier: the layer now makes a fresh directory here.
				n.name, n.kind, n.removed, n.opaque, n.explicit = p, KindDir, false, true, false
				v.store(n, true)
			case n != nil:
				if n.name != p {
					return false, fmt.Errorf("%w: %s and %s", ErrCaseCollision, n.name, p)
				}
			default:
				if inherit && v.parents != nil {
					switch k := v.parents(p); k {
					case KindDir:
					case KindNone:
						inherit = false
					default:
						return false, fmt.Errorf("%w: %s is a %s in a parent layer", ErrParentNotDirectory, p, k)
					}
				}
				n = &vname{name: p, kind: KindDir}
				v.insert(key, n)
				if err := v.tableErr(); err != nil {
					return false, err
				}
				v.chain = append(v.chain, link{i, n.rec})
				goto next
			}
			v.chain = append(v.chain, link{i, n.rec})
		}
		if n.kind != KindDir {
			return false, fmt.Errorf("%w: %s is a %s of this layer", ErrParentNotDirectory, p, n.kind)
		}
		if n.opaque {
			inherit = false
		}
	next:
		j := strings.IndexByte(name[i+1:], '/')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if same {
		v.chain = v.chain[:k]
	}
	return inherit, v.tableErr()
}

// create checks that name may be created now as kind, records it and returns its
// record.
func (v *Validator) create(name string, kind Kind) (int, error) {
	if _, err := v.walk(name); err != nil {
		return -1, err
	}
	key := foldName(name)
	n := v.lookup(key)
	if n != nil && !n.removed {
		if n.name != name {
			return -1, fmt.Errorf("%w: %s and %s", ErrCaseCollision, n.name, name)
		}
		if n.explicit {
			return -1, fmt.Errorf("%w: %s is given twice; Windows creates every name once", ErrDuplicate, name)
		}
		// Implied by entries below it: only a plain directory may take its place.
		if kind != KindDir {
			return -1, fmt.Errorf("%w: %s holds entries of this layer, so it cannot be a %s", ErrDuplicate, name, kind)
		}
		n.explicit = true
		v.store(n, false)
	} else {
		nn := &vname{name: name, kind: kind, explicit: true}
		if n != nil { // removed earlier, added again: the parents' content below is hidden
			nn.opaque = kind == KindDir
			nn.rec = n.rec
			v.store(nn, true)
		} else {
			v.insert(key, nn)
		}
		n = nn
	}
	if err := v.tableErr(); err != nil {
		return -1, err
	}
	v.chain = append(v.chain, link{len(name), n.rec})
	return n.rec, nil
}

// Add checks an entry (a file, directory or reparse point) and returns its cleaned
// name. It normalises one field of e: a reparse point without data has no data
// stream (as Windows backs it up), whatever the form it came in says, since only a
// backup stream can tell an empty data stream from none there.
func (v *Validator) Add(e *Entry) (string, error) {
	if len(e.Reparse) > 0 && e.Size == 0 && !e.IsDir() {
		e.NoDataStream = true
	}
	v.cur = -1
	name, err := CleanName(e.Name)
	if err != nil {
		return "", err
	}
	if e.Removed || e.LinkTarget != "" {
		return "", fmt.Errorf("%w: a removal or hard link given as an entry", ErrNotSupported)
	}
	if err := v.checkSize(e.Size); err != nil {
		return "", err
	}
	if e.IsDir() && e.Size != 0 {
		return "", fmt.Errorf("%w: a directory with %d bytes of data", ErrSizeMismatch, e.Size)
	}
	if e.NoDataStream && e.Size != 0 {
		return "", fmt.Errorf("%w: no data stream but %d bytes of data", ErrSizeMismatch, e.Size)
	}
	if sd := e.SecurityDescriptor; len(sd) > 0 {
		if err := winfile.ValidateSecurityDescriptor(sd); err != nil {
			return "", fmt.Errorf("security descriptor: %w", err)
		}
	}
	if len(e.ExtendedAttributes) > 0 {
		if _, err := winfile.EncodeExtendedAttributes(e.ExtendedAttributes); err != nil {
			return "", fmt.Errorf("extended attributes: %w", err)
		}
	}
	if len(e.Reparse) > 0 {
		if _, err := winfile.DecodeReparsePoint(e.Reparse); err != nil {
			return "", fmt.Errorf("reparse buffer: %w", err)
		}
	}
	rec, err := v.create(name, EntryKind(e))
	if err != nil {
		return "", err
	}
	v.cur, v.curName = rec, name
	v.streams = nil
	return name, nil
}

// AddStream checks an alternate data stream of the entry added last and returns its
// name in the form Windows reports it (":name:$DATA").
func (v *Validator) AddStream(name string, size int64) (string, error) {
	if v.cur < 0 {
		return "", fmt.Errorf("%w: alternate data stream %s without its file", ErrNoEntry, name)
	}
	sname, err := canonicalStreamName(name)
	if err != nil {
		return "", err
	}
	if err := v.checkSize(size); err != nil {
		return "", err
	}
	key := foldName(sname)
	if v.streams[key] {
		return "", fmt.Errorf("%w: alternate data stream %s%s is given twice", ErrDuplicate, v.curName, sname)
	}
	if v.streams == nil {
		v.streams = map[string]bool{}
	}
	v.streams[key] = true
	return sname, nil
}

// AddLink checks a hard link and returns the cleaned name and target.
func (v *Validator) AddLink(name, target string) (string, string, error) {
	v.cur = -1
	cname, err := CleanName(name)
	if err != nil {
		return "", "", err
	}
	ctarget, err := CleanName(target)
	if err != nil {
		return "", "", fmt.Errorf("target %s: %w", target, err)
	}
	kind, err := v.linkTarget(ctarget)
	if err != nil {
		return "", "", err
	}
	if _, err := v.create(cname, kind); err != nil {
		return "", "", err
	}
	return cname, ctarget, nil
}

// linkTarget finds what a hard link points to.
func (v *Validator) linkTarget(target string) (Kind, error) {
	if n := v.lookup(foldName(target)); n != nil {
		switch {
		case n.removed:
			return 0, fmt.Errorf("%w: %s is removed by this layer", ErrLinkTarget, target)
		case n.name != target:
			return 0, fmt.Errorf("%w: %s is spelled %s in this layer", ErrLinkTarget, target, n.name)
		case n.kind == KindDir || n.kind == KindDirLink:
			return 0, fmt.Errorf("%w: %s is a directory", ErrLinkTarget, target)
		}
		return n.kind, nil
	}
	// Not (yet) in this layer: it must be inherited, under ancestors this layer kept.
	inherit := !v.base && v.parents != nil
	for i := strings.IndexByte(target, '/'); i >= 0 && inherit; {
		if n := v.lookup(foldName(target[:i])); n != nil && (n.removed || n.opaque || n.kind != KindDir) {
			inherit = false
		}
		j := strings.IndexByte(target[i+1:], '/')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if inherit {
		switch k := v.parents(target); k {
		case KindFile, KindLink:
			return k, nil
		case KindDir, KindDirLink:
			return 0, fmt.Errorf("%w: %s is a directory in a parent layer", ErrLinkTarget, target)
		}
	}
	return 0, fmt.Errorf("%w: %s is neither an earlier entry of this layer nor in its parents", ErrLinkTarget, target)
}

// Remove checks a removal (a whiteout) and returns the cleaned name.
func (v *Validator) Remove(name string) (string, error) {
	v.cur = -1
	cname, err := CleanName(name)
	if err != nil {
		return "", err
	}
	if v.base {
		return "", ErrBaseLayerWhiteout
	}
	if !strings.Contains(cname, "/") {
		return "", fmt.Errorf("%w: cannot remove the top-level folder %s", ErrInvalidName, cname)
	}
	if _, err := v.walk(cname); err != nil {
		return "", err
	}
	key := foldName(cname)
	if n := v.lookup(key); n != nil {
		if n.removed {
			return "", fmt.Errorf("%w: %s is removed twice", ErrDuplicate, cname)
		}
		return "", fmt.Errorf("%w: %s is added by this layer; a layer removes only what its parents hold", ErrDuplicate, cname)
	}
	v.insert(key, &vname{name: cname, removed: true})
	if err := v.tableErr(); err != nil {
		return "", err
	}
	return cname, nil
}
