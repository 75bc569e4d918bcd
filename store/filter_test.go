package store

import (
	"errors"
	"testing"
)

func TestParseFilters(t *testing.T) {
	info := &Info{Key: "a-wl", Parent: "p-wl", Kind: KindActive, Format: FormatLinuxDir, Labels: map[string]string{"l": "2", "containerd.io/gc.root": "x"}}
	for _, tc := range []struct {
		filter string
		match  bool
	}{
		{"name==a-wl", true},
		{"key==a-wl", true},
		{"name==a-wl,labels.l", true},
		{`labels."containerd.io/gc.root"==x`, true},
		{`labels."containerd.io/gc.root"==y`, false},
		{"labels.containerd.io/gc.root==x", true},
		{"kind==active", true},
		{"kind==view", false},
		{`parent!=""`, true},
		{"parent~=^p-", true},
		{"name ~= wl$ , format==linux-dir", true},
		{"labels.missing", false},
		{"labels.missing!=x", false},
		{"nosuchfield==x", false},
		{`name=="a-wl"`, true},
	} {
		fs, err := parseFilters([]string{tc.filter})
		if err != nil {
			t.Errorf("%q: %v", tc.filter, err)
			continue
		}
		if got := fs.match(info); got != tc.match {
			t.Errorf("%q matches = %v, want %v", tc.filter, got, tc.match)
		}
	}
	for _, bad := range []string{"", ",", "name==x,", `name=="x`, "name~=(", "name=x", ".name"} {
		if _, err := parseFilters([]string{bad}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q: error %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// FuzzParseFilters checks that the parser never panics, that what it accepts is
// evaluated without panicking, and that every error is ErrInvalidArgument.
func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{"name==a", `labels."containerd.io/gc.root"==check-walk`, "kind==active,labels.l", `parent!=""`, "name~=^sha256:", `a.b.c=="x\"y"`} {
		f.Add(s)
	}
	info := &Info{Key: "k", Parent: "p", Kind: KindView, Labels: map[string]string{"a": "b"}}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := parseFilters([]string{s})
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("%q: error of another class: %v", s, err)
			}
			return
		}
		if len(fs) != 1 || len(fs[0]) == 0 {
			t.Fatalf("%q parsed to %d filters", s, len(fs))
		}
		fs.match(info)
	})
}
