package compute

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommandLine(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "", want: nil},
		{in: "  sh  -c   'echo hi'  ", want: []string{"sh", "-c", "echo hi"}},
		{in: `a "b c" d`, want: []string{"a", "b c", "d"}},
		{in: `"a\"b" 'c\d' e\ f`, want: []string{`a"b`, `c\d`, "e f"}},
		{in: `"x\y"`, want: []string{`x\y`}},
		{in: `'' ""`, want: []string{"", ""}},
		{in: `a'b'"c"`, want: []string{"abc"}},
		{in: "a\tb\nc", want: []string{"a", "b", "c"}},
		{in: `'open`, bad: true},
		{in: `"open`, bad: true},
		{in: `end\`, bad: true},
	}
	for _, tt := range tests {
		got, err := SplitCommandLine(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "offset") {
				t.Errorf("%q: error %v, want ErrInvalidArgument with an offset", tt.in, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %q %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

// quote renders args so that SplitCommandLine gives them back.
func quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func FuzzSplitCommandLine(f *testing.F) {
	for _, s := range []string{"", "sh -c 'echo hi'", `a "b\"c" d\ e`, `'`, `"\`, "x\ty\nz", `''""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitCommandLine(s)
		if err != nil {
			return
		}
		// Quoting the words again gives the same words.
		again, err := SplitCommandLine(quote(args))
		if err != nil {
			t.Fatalf("requoted %q: %v", quote(args), err)
		}
		if len(args) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(args, again) {
			t.Fatalf("%q → %q → %q", s, args, again)
		}
	})
}
