package ext4_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/dmverity"
	"github.com/hostcompute/hostcompute/pkg/ext4"
)

// TestWriteObserverVerity builds images with a dmverity.Level0 watching the writes
// and checks that the tree AppendLevel0 makes from what it saw (plus the patched
// blocks it reads back) is the one Append makes by reading the whole image: the
// observer must be told of every byte, patches included.
func TestWriteObserverVerity(t *testing.T) {
	dups := append(richEntries(), inlineDupEntries()...)
	// A replaced file with data frees (and zeroes) its blocks at close.
	dups = append(dups, file("big", 0o644, randBytes(3, 300<<10)), file("big", 0o644, randBytes(4, 5000)))
	for _, tc := range []struct {
		name    string
		entries []entry
		opts    []ext4.Option
	}{
		{"plain", richEntries(), nil},
		{"inline", richEntries(), []ext4.Option{ext4.WithInlineData()}},
		{"duplicates", dups, nil},
		{"compat", compatEntries(), []ext4.Option{ext4.WithHcsshimCompat()}},
		{"whiteouts", whiteoutEntries(), []ext4.Option{ext4.WithConvertWhiteouts()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dmverity.Params{Hcsshim: true}
			l, err := dmverity.NewLevel0(p, 0)
			if err != nil {
				t.Fatal(err)
			}
			img, res := build(t, makeTar(t, tc.entries), append(tc.opts, ext4.WithWriteObserver(l))...)
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			ref := filepath.Join(t.TempDir(), "ref")
			if err := os.WriteFile(ref, data, 0o600); err != nil {
				t.Fatal(err)
			}
			got := appendVerity(t, img, res.Size, p, l)
			want := appendVerity(t, ref, res.Size, p, nil)
			if !bytes.Equal(got, want) {
				t.Fatalf("root %x, reading the image back gives %x", got, want)
			}
			a, _ := os.ReadFile(img)
			b, _ := os.ReadFile(ref)
			if !bytes.Equal(a, b) {
				t.Fatal("image with tree differs from the one made by reading back")
			}
		})
	}
}

func appendVerity(t *testing.T, path string, size int64, p dmverity.Params, l *dmverity.Level0) []byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := dmverity.AppendLevel0(context.Background(), f, size, p, l)
	if err != nil {
		t.Fatal(err)
	}
	return info.RootHash
}
