package mount

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Mount is one step of a plan, a serialized system call: what to attach,
// format or mount, from where to where, with which options. It has the shape
// of containerd's mount.Mount so that a plan reads like one.
//
// The types the executor runs itself:
//
//   - "mkdir": make the directory Target and its missing parents; the undo
//     removes those it made (if empty), unless Options has "keep".
//   - "loop": bind the file Source to a free loop device (autoclear). Target
//     names the device for later steps ("@name"); Options "ro",
//     "sizelimit=N", "offset=N", "direct-io". The device lives as long as a
//     mount of it; one that no step mounts lives until the undo.
//   - "format": make a file system on the device Source. Options "fs=ext4"
//     or "fs=ntfs", "label=L", "if-blank" (keep a file system of that type,
//     format only a disk whose first 64 KiB are zeros, refuse anything else),
//     "zeroed" (the device reads as zeros: skip writing zeros).
//   - "ext4", "ntfs", "auto": mount the file system on the device Source at
//     Target ("auto" finds out which of the two it is). "ro" mounts
//     read-only; read-only ext4 is always mounted with "noload" (see the
//     package documentation). NTFS uses the kernel's ntfs3 driver when there
//     is one, else ntfs-3g.
//   - "overlay": an overlayfs union at Target, Source naming its owner in
//     mountinfo; Options "lowerdir+=DIR" once per lower layer (topmost
//     first), "upperdir=DIR" and "workdir=DIR" for a writable union.
//   - "bind": bind-mount Source at Target; "ro" makes it read-only from the
//     start.
//
// Other types are run by the Handlers of the Executor: the host engine adds
// the attachment of a disk through a FUSE raw view and the FUSE view of a
// CIM this way, so that they are steps of the same plan.
//
// A Source of the form "@name" is the device a previous step named name.
type Mount struct {
	Type    string   `json:"type"`
	Source  string   `json:"source,omitempty"`
	Target  string   `json:"target,omitempty"`
	Options []string `json:"options,omitempty"`
}

// String shows m as one line, as mount(8) would be called.
func (m Mount) String() string {
	s := m.Type
	if m.Source != "" {
		s += " " + m.Source
	}
	if m.Target != "" {
		s += " " + m.Target
	}
	if len(m.Options) > 0 {
		s += " -o " + strings.Join(m.Options, ",")
	}
	return s
}

// Plan is a list of steps, applied in order and undone in reverse order.
type Plan []Mount

// Step types run by the executor itself.
const (
	TypeMkdir   = "mkdir"
	TypeLoop    = "loop"
	TypeFormat  = "format"
	TypeExt4    = "ext4"
	TypeNTFS    = "ntfs"
	TypeAuto    = "auto"
	TypeOverlay = "overlay"
	TypeBind    = "bind"
)

var builtin = map[string]bool{TypeMkdir: true, TypeLoop: true, TypeFormat: true, TypeExt4: true,
	TypeNTFS: true, TypeAuto: true, TypeOverlay: true, TypeBind: true}

// ErrInvalidPlan means a plan cannot be applied as it is: an unknown type, a
// missing target, a reference to a device no earlier step made. Nothing was
// done.
var ErrInvalidPlan = errors.New("mount: invalid plan")

// Result is what a Handler did: the device it made (for "@name" references,
// if the step named one in Target) and how to undo it.
type Result struct {
	Device string
	Undo   func(ctx context.Context) error
}

// Handler runs a step of a type the executor does not know. It must leave
// nothing behind when it fails.
type Handler func(ctx context.Context, m Mount) (Result, error)

// Executor applies plans. Its zero value runs the built-in types.
type Executor struct {
	// Handlers run further step types, by Type.
	Handlers map[string]Handler
	// Hook, if set, runs before each step; an error from it fails that step
	// as if the step itself had failed. Tests inject failures here.
	Hook func(m Mount) error
}

// Option builders.

// MkdirStep makes dir and its missing parents.
func MkdirStep(dir string) Mount { return Mount{Type: TypeMkdir, Target: dir} }

// KeepDirStep makes dir and its missing parents and keeps them at the undo
// (directories inside a file system the plan mounts, say).
func KeepDirStep(dir string) Mount {
	return Mount{Type: TypeMkdir, Target: dir, Options: []string{"keep"}}
}

// LoopOptions says how a loop step binds its file.
type LoopOptions struct {
	ReadOnly  bool
	SizeLimit int64
	Offset    int64
	DirectIO  bool
}

// LoopStep binds file to a loop device named name ("@name" in later steps).
func LoopStep(file, name string, o LoopOptions) Mount {
	m := Mount{Type: TypeLoop, Source: file, Target: "@" + name}
	if o.ReadOnly {
		m.Options = append(m.Options, "ro")
	}
	if o.SizeLimit > 0 {
		m.Options = append(m.Options, "sizelimit="+strconv.FormatInt(o.SizeLimit, 10))
	}
	if o.Offset > 0 {
		m.Options = append(m.Options, "offset="+strconv.FormatInt(o.Offset, 10))
	}
	if o.DirectIO {
		m.Options = append(m.Options, "direct-io")
	}
	return m
}

// FilesystemMount mounts the file system of type typ (TypeExt4, TypeNTFS or
// TypeAuto) on device at target.
func FilesystemMount(typ, device, target string, readOnly bool) Mount {
	m := Mount{Type: typ, Source: device, Target: target}
	if readOnly {
		m.Options = []string{"ro"}
	}
	return m
}

// OverlayMount is the union o at target.
func OverlayMount(target string, o Overlay) Mount {
	src := o.Source
	if src == "" {
		src = "overlay"
	}
	m := Mount{Type: TypeOverlay, Source: src, Target: target, Options: make([]string, 0, len(o.Lower)+2)}
	// The options are slices of one string: a hundred lowers are a hundred
	// allocations otherwise.
	const key = "lowerdir+="
	size := len(o.Lower) * len(key)
	for _, l := range o.Lower {
		size += len(l)
	}
	var b strings.Builder
	b.Grow(size)
	for _, l := range o.Lower {
		b.WriteString(key)
		b.WriteString(l)
	}
	all, start := b.String(), 0
	for _, l := range o.Lower {
		end := start + len(key) + len(l)
		m.Options = append(m.Options, all[start:end])
		start = end
	}
	if o.Upper != "" || o.Work != "" {
		m.Options = append(m.Options, "upperdir="+o.Upper, "workdir="+o.Work)
	}
	return m
}

// BindMount bind-mounts source at target.
func BindMount(source, target string, readOnly bool) Mount {
	m := Mount{Type: TypeBind, Source: source, Target: target}
	if readOnly {
		m.Options = []string{"ro"}
	}
	return m
}

// FormatStep makes a file system fs ("ext4" or "ntfs") on device; with
// ifBlank only when the device is blank (see Mount).
func FormatStep(device, fs, label string, ifBlank bool) Mount {
	m := Mount{Type: TypeFormat, Source: device, Options: []string{"fs=" + fs}}
	if label != "" {
		m.Options = append(m.Options, "label="+label)
	}
	if ifBlank {
		m.Options = append(m.Options, "if-blank")
	}
	return m
}

// option returns the value of key=value in opts, and whether it is there.
func option(opts []string, key string) (string, bool) {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func hasFlag(opts []string, flag string) bool {
	for _, o := range opts {
		if o == flag {
			return true
		}
	}
	return false
}

// overlayOf reads an overlay step back into an Overlay.
func overlayOf(m Mount) Overlay {
	o := Overlay{Source: m.Source, Lower: make([]string, 0, len(m.Options))}
	o.Upper, o.Work = overlayOptions(m, func(l string) { o.Lower = append(o.Lower, l) })
	return o
}

// overlayOptions reads an overlay step's options: lower gets each lower layer
// in order, and the upper and work directories are returned.
func overlayOptions(m Mount, lower func(string)) (upper, work string) {
	for _, opt := range m.Options {
		switch k, v, _ := strings.Cut(opt, "="); k {
		case "lowerdir+":
			lower(v)
		case "upperdir":
			upper = v
		case "workdir":
			work = v
		}
	}
	return upper, work
}

// Validate checks plan without doing anything: every type is known, every
// step has what it needs, every "@name" was made by an earlier step.
func (e *Executor) Validate(plan Plan) error {
	names := map[string]bool{}
	for i, m := range plan {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: step %d (%s): %s", ErrInvalidPlan, i, m, fmt.Sprintf(format, args...))
		}
		if !builtin[m.Type] && e.Handlers[m.Type] == nil {
			return bad("unknown type %q", m.Type)
		}
		if strings.HasPrefix(m.Source, "@") && !names[m.Source] {
			return bad("%s is not made by an earlier step", m.Source)
		}
		switch m.Type {
		case TypeMkdir:
			if !filepath.IsAbs(m.Target) {
				return bad("the directory must be an absolute path")
			}
		case TypeLoop:
			if m.Source == "" || !strings.HasPrefix(m.Target, "@") {
				return bad("a loop step needs a file and a device name (@name)")
			}
			for _, k := range []string{"sizelimit", "offset"} {
				if v, ok := option(m.Options, k); ok {
					if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
						return bad("%s=%q is not a byte count", k, v)
					}
				}
			}
		case TypeFormat:
			if fs, _ := option(m.Options, "fs"); fs != "ext4" && fs != "ntfs" {
				return bad("fs=%q: want ext4 or ntfs", fs)
			}
		case TypeExt4, TypeNTFS, TypeAuto, TypeBind:
			if m.Source == "" || !filepath.IsAbs(m.Target) {
				return bad("needs a source and an absolute target")
			}
		case TypeOverlay:
			if !filepath.IsAbs(m.Target) {
				return bad("needs an absolute target")
			}
			// The shape alone: the lower names are checked where the
			// option string is built.
			var o Overlay
			lowers := 0
			o.Upper, o.Work = overlayOptions(m, func(string) { lowers++ })
			if err := o.validateShape(m.Target, lowers); err != nil {
				return err
			}
		}
		if strings.HasPrefix(m.Target, "@") {
			if names[m.Target] {
				return bad("%s is made twice", m.Target)
			}
			names[m.Target] = true
		}
	}
	return nil
}

// Undo undoes an applied plan: Release runs the undo of every step, the last
// step first. It is safe for concurrent use.
type Undo struct {
	mu    sync.Mutex
	steps []undoStep
}

type undoStep struct {
	m  Mount
	fn func(ctx context.Context) error
}

func (u *Undo) push(m Mount, fn func(ctx context.Context) error) {
	u.mu.Lock()
	u.steps = append(u.steps, undoStep{m, fn})
	u.mu.Unlock()
}

// Append puts the steps of v on top of u's (they are undone first) and
// empties v.
func (u *Undo) Append(v *Undo) {
	if v == nil || v == u {
		return
	}
	v.mu.Lock()
	steps := v.steps
	v.steps = nil
	v.mu.Unlock()
	u.mu.Lock()
	u.steps = append(u.steps, steps...)
	u.mu.Unlock()
}

// Steps returns the steps still to undo, in the order they were applied.
func (u *Undo) Steps() Plan {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := make(Plan, len(u.steps))
	for i, s := range u.steps {
		p[i] = s.m
	}
	return p
}

// Release undoes the steps, last first. It stops at the first failure and
// keeps that step and those below it, so that Release can be called again.
func (u *Undo) Release(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.steps) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		s := u.steps[len(u.steps)-1]
		if s.fn != nil {
			if err := s.fn(ctx); err != nil {
				return fmt.Errorf("mount: undoing %s: %w", s.m, err)
			}
		}
		u.steps = u.steps[:len(u.steps)-1]
	}
	return nil
}

// ApplyParallel applies independent plans at once, up to workers at a time,
// and returns one Undo for all of them (in the order of plans). If any
// fails, what the others did is undone too and the error of the first
// failing plan, in order, is returned.
func (e *Executor) ApplyParallel(ctx context.Context, plans []Plan, workers int) (*Undo, error) {
	if workers < 1 {
		workers = 1
	}
	for _, p := range plans {
		if err := e.Validate(p); err != nil {
			return nil, err
		}
	}
	undos := make([]*Undo, len(plans))
	errs := make([]error, len(plans))
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, p := range plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if errs[i] = ctx.Err(); errs[i] == nil {
				undos[i], errs[i] = e.Apply(ctx, p)
			}
		}()
	}
	wg.Wait()
	all := &Undo{}
	for _, u := range undos {
		all.Append(u)
	}
	for i, err := range errs {
		if err != nil {
			err = &PlanError{Plan: i, Err: err}
			if rerr := all.Release(context.Background()); rerr != nil {
				return nil, errors.Join(err, rerr)
			}
			return nil, err
		}
	}
	return all, nil
}

// PlanError names which of the plans given to ApplyParallel failed.
type PlanError struct {
	Plan int // index in the plans
	Err  error
}

func (e *PlanError) Error() string { return e.Err.Error() }
func (e *PlanError) Unwrap() error { return e.Err }
