package ocilayer

import (
	"errors"
	"testing"
)

func TestEntryErrorMessage(t *testing.T) {
	cases := []struct {
		err  *EntryError
		want string
	}{
		{&EntryError{Entry: "a/b", Offset: 1024, Op: "mknod", Err: ErrUnsupported}, `ocilayer: mknod entry "a/b" at offset 1024: ocilayer: unsupported: unsupported operation`},
		{&EntryError{Entry: "a", Offset: -1, Err: ErrInvalidEntry}, `ocilayer: entry "a": ocilayer: invalid entry`},
		{&EntryError{Offset: 512, Op: "read", Err: errors.New("boom")}, `ocilayer: read at offset 512: boom`},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q; want %q", got, tc.want)
		}
	}
}
