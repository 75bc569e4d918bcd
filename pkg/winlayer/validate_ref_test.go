package winlayer

// The Validator as it was when it kept its names in a map, kept as the reference
// the compact one is compared with (TestValidatorSameAsReference).

import (
	"fmt"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// refValidator holds the rules of a Windows layer, the same for every way into one (a
// tar imported into a folder, a CIM built from a tar or a folder, hcsshim's
// LayerWriter and CimLayerWriter): each writer passes every call through a
// refValidator before it changes anything. The rules are those a Windows host applies
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
// A refValidator is not safe for concurrent use. Its memory grows with the number of
// names in the layer.
type refValidator struct {
	base    bool
	parents ParentLookup
	names   map[string]*refVname // by folded name
	cur     *refVname            // the entry alternate streams attach to
	streams map[string]bool      // folded stream names of cur
	free    func() uint64        // free bytes where the data goes, or nil
}

// SetFreeSpace gives the refValidator a way to learn how many bytes the layer's
// target filesystem has free: a file or stream declaring more than that (from
// 64 MiB on) is refused with ErrTooLarge before any of its data is read.
func (v *refValidator) SetFreeSpace(free func() uint64) { v.free = free }

// checkSize applies the size rules to a file or stream of size bytes.
func (v *refValidator) checkSize(size int64) error {
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

type refVname struct {
	name     string // as first spelled
	kind     Kind
	explicit bool // given as an entry (not only implied by names below it)
	removed  bool // removed by this layer (and not added again)
	opaque   bool // added after being removed: the parents' content below it is hidden
}

// NewValidator returns the validator of a layer; base says it has no parents.
// parents answers for the parent layers and may be nil when there are none or they
// are not known (then only this layer's own names are checked).
func newRefValidator(base bool, parents ParentLookup) *refValidator {
	return &refValidator{base: base, parents: parents, names: map[string]*refVname{}}
}

// walk checks the ancestors of name (a cleaned name) and records the missing ones as
// implicit directories. It returns whether the parents' content at name is still
// visible (no ancestor removed or replaced by this layer).
func (v *refValidator) walk(name string) (inherit bool, err error) {
	inherit = true
	for i := strings.IndexByte(name, '/'); i >= 0; {
		p := name[:i]
		key := foldName(p)
		n := v.names[key]
		switch {
		case n != nil && n.removed:
			// Removed earlier: the layer now makes a fresh directory here.
			n.name, n.kind, n.removed, n.opaque, n.explicit = p, KindDir, false, true, false
			inherit = false
		case n != nil:
			if n.name != p {
				return false, fmt.Errorf("%w: %s and %s", ErrCaseCollision, n.name, p)
			}
			if n.kind != KindDir {
				return false, fmt.Errorf("%w: %s is a %s of this layer", ErrParentNotDirectory, p, n.kind)
			}
			if n.opaque {
				inherit = false
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
			v.names[key] = &refVname{name: p, kind: KindDir}
		}
		j := strings.IndexByte(name[i+1:], '/')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return inherit, nil
}

// create checks that name may be created now as kind, and records it.
func (v *refValidator) create(name string, kind Kind) error {
	if _, err := v.walk(name); err != nil {
		return err
	}
	key := foldName(name)
	n := v.names[key]
	if n != nil && !n.removed {
		if n.name != name {
			return fmt.Errorf("%w: %s and %s", ErrCaseCollision, n.name, name)
		}
		if n.explicit {
			return fmt.Errorf("%w: %s is given twice; Windows creates every name once", ErrDuplicate, name)
		}
		// Implied by entries below it: only a plain directory may take its place.
		if kind != KindDir {
			return fmt.Errorf("%w: %s holds entries of this layer, so it cannot be a %s", ErrDuplicate, name, kind)
		}
		n.explicit = true
		return nil
	}
	nn := &refVname{name: name, kind: kind, explicit: true}
	if n != nil { // removed earlier, added again: the parents' content below is hidden
		nn.opaque = kind == KindDir
	}
	v.names[key] = nn
	return nil
}

// Add checks an entry (a file, directory or reparse point) and returns its cleaned
// name. It normalises one field of e: a reparse point without data has no data
// stream (as Windows backs it up), whatever the form it came in says, since only a
// backup stream can tell an empty data stream from none there.
func (v *refValidator) Add(e *Entry) (string, error) {
	if len(e.Reparse) > 0 && e.Size == 0 && !e.IsDir() {
		e.NoDataStream = true
	}
	v.cur = nil
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
	if err := v.create(name, EntryKind(e)); err != nil {
		return "", err
	}
	v.cur = v.names[foldName(name)]
	v.streams = nil
	return name, nil
}

// AddStream checks an alternate data stream of the entry added last and returns its
// name in the form Windows reports it (":name:$DATA").
func (v *refValidator) AddStream(name string, size int64) (string, error) {
	if v.cur == nil {
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
		return "", fmt.Errorf("%w: alternate data stream %s%s is given twice", ErrDuplicate, v.cur.name, sname)
	}
	if v.streams == nil {
		v.streams = map[string]bool{}
	}
	v.streams[key] = true
	return sname, nil
}

// AddLink checks a hard link and returns the cleaned name and target.
func (v *refValidator) AddLink(name, target string) (string, string, error) {
	v.cur = nil
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
	if err := v.create(cname, kind); err != nil {
		return "", "", err
	}
	return cname, ctarget, nil
}

// linkTarget finds what a hard link points to.
func (v *refValidator) linkTarget(target string) (Kind, error) {
	if n := v.names[foldName(target)]; n != nil {
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
		if n := v.names[foldName(target[:i])]; n != nil && (n.removed || n.opaque || n.kind != KindDir) {
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
func (v *refValidator) Remove(name string) (string, error) {
	v.cur = nil
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
	if n := v.names[key]; n != nil {
		if n.removed {
			return "", fmt.Errorf("%w: %s is removed twice", ErrDuplicate, cname)
		}
		return "", fmt.Errorf("%w: %s is added by this layer; a layer removes only what its parents hold", ErrDuplicate, cname)
	}
	v.names[key] = &refVname{name: cname, removed: true}
	return cname, nil
}
