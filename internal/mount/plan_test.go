package mount

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Planning needs no privileges: these tests run as any user.

func TestValidate(t *testing.T) {
	e := &Executor{Handlers: map[string]Handler{"vhd": func(context.Context, Mount) (Result, error) { return Result{}, nil }}}
	good := Plan{
		MkdirStep("/x/l0"),
		LoopStep("/x/layer.vhd", "l0", LoopOptions{ReadOnly: true, SizeLimit: 4096}),
		FilesystemMount(TypeExt4, "@l0", "/x/l0", true),
		{Type: "vhd", Source: "/x/s.vhdx", Target: "@s"},
		FormatStep("@s", "ext4", "scratch", true),
		FilesystemMount(TypeAuto, "@s", "/x/s", false),
		OverlayMount("/x/root", Overlay{Lower: []string{"/x/l0"}, Upper: "/x/s/u", Work: "/x/s/w"}),
		BindMount("/x/root", "/x/view", true),
	}
	if err := e.Validate(good); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]Plan{
		"unknown type":        {{Type: "nfs", Source: "a", Target: "/b"}},
		"undefined device":    {FilesystemMount(TypeExt4, "@nope", "/x", true)},
		"device made twice":   {LoopStep("/a", "d", LoopOptions{}), LoopStep("/b", "d", LoopOptions{})},
		"relative target":     {MkdirStep("x")},
		"loop without a name": {{Type: TypeLoop, Source: "/a", Target: "/b"}},
		"bad size limit":      {{Type: TypeLoop, Source: "/a", Target: "@d", Options: []string{"sizelimit=-1"}}},
		"format of what":      {{Type: TypeFormat, Source: "/dev/x", Options: []string{"fs=xfs"}}},
		"overlay no lower":    {OverlayMount("/x", Overlay{})},
		"upper without work":  {{Type: TypeOverlay, Source: "o", Target: "/x", Options: []string{"lowerdir+=/a", "upperdir=/u"}}},
	} {
		err := e.Validate(p)
		var me *Error
		if !errors.Is(err, ErrInvalidPlan) && !errors.As(err, &me) {
			t.Errorf("%s: got %v, want a refusal", name, err)
		}
	}
}

func TestOverlayMountRoundTrip(t *testing.T) {
	o := Overlay{Lower: []string{"/a:b", "/c,d"}, Upper: "/u", Work: "/w", Source: "hcs-test"}
	m := OverlayMount("/t", o)
	if got := overlayOf(m); !reflect.DeepEqual(got, o) {
		t.Errorf("overlayOf(OverlayMount(o)) = %+v, want %+v", got, o)
	}
	if !strings.Contains(m.String(), "lowerdir+=/a:b") {
		t.Errorf("String() = %q", m.String())
	}
}

func TestUndoOrder(t *testing.T) {
	var order []string
	u := &Undo{}
	for _, n := range []string{"a", "b", "c"} {
		u.push(Mount{Type: n}, func(context.Context) error {
			order = append(order, n)
			if n == "b" && len(order) == 2 {
				return errors.New("busy")
			}
			return nil
		})
	}
	if err := u.Release(context.Background()); err == nil {
		t.Fatal("a failing undo step gave no error")
	}
	if len(u.Steps()) != 2 {
		t.Fatalf("after a failure %d steps kept, want 2 (the failed one and below)", len(u.Steps()))
	}
	if err := u.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"c", "b", "b", "a"}; !reflect.DeepEqual(order, want) {
		t.Errorf("undo order %v, want %v", order, want)
	}
}
