package dmverity

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// producer writes a file the way pkg/ext4 does, reporting to a Level0: sequential
// regions of any size and alignment with holes between them, then patches of
// earlier bytes, then a truncation to the data size.
type producer struct {
	t   *testing.T
	f   *os.File
	l   *Level0
	pos int64
}

func (p *producer) write(b []byte) {
	if _, err := p.f.WriteAt(b, p.pos); err != nil {
		p.t.Fatal(err)
	}
	p.l.Written(p.pos, b)
	p.pos += int64(len(b))
}

func (p *producer) patch(b []byte, off int64) {
	if _, err := p.f.WriteAt(b, off); err != nil {
		p.t.Fatal(err)
	}
	p.l.Rewritten(off, int64(len(b)))
}

// produce makes a random file of about size bytes through p and returns its data
// size (a multiple of BlockSize).
func produce(t *testing.T, f *os.File, l *Level0, seed uint64, size int64) int64 {
	r := rand.New(rand.NewPCG(seed, 7))
	p := &producer{t: t, f: f, l: l, pos: 2 * BlockSize} // blocks 0-1 patched last, as ext4's
	for p.pos < size {
		switch r.IntN(6) {
		case 0: // hole
			p.pos += int64(r.IntN(3 * BlockSize))
		case 1: // explicit zeros (hashed, not skipped)
			p.write(make([]byte, r.IntN(2*BlockSize)+1))
		default:
			b := make([]byte, r.IntN(300<<10)+1)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			p.write(b)
		}
	}
	for range 5 {
		b := bytes.Repeat([]byte{byte(r.Uint32())}, r.IntN(3*BlockSize)+1)
		p.patch(b, r.Int64N(p.pos))
	}
	p.patch(bytes.Repeat([]byte{0x53}, 2*BlockSize), 0)
	dataSize := (p.pos + int64(r.IntN(4))*BlockSize) &^ (BlockSize - 1)
	if err := f.Truncate(dataSize); err != nil {
		t.Fatal(err)
	}
	return dataSize
}

// TestAppendLevel0 checks that AppendLevel0 writes the bytes and root hash Append
// does, for producers with holes, unaligned writes, patches and limits below the
// data size.
func TestAppendLevel0(t *testing.T) {
	t.Run("in memory", testAppendLevel0)
	// The digests of all but the last 64 blocks spill to the file.
	defer func(m int) { level0Mem = m }(level0Mem)
	level0Mem = 64 * DigestSize
	t.Run("spilled", testAppendLevel0)
}

func testAppendLevel0(t *testing.T) {
	for _, tc := range []struct {
		name  string
		seed  uint64
		size  int64
		limit int64
		p     Params
	}{
		{"default limit", 1, 3 << 20, 0, Params{Hcsshim: true}},
		{"one worker", 2, 3 << 20, 0, Params{Workers: 1}},
		{"limit within", 3, 3 << 20, 1 << 20, Params{NoSalt: true}},
		{"limit unaligned", 4, 2 << 20, 300*BlockSize + 100, Params{Salt: []byte("salt")}},
		{"small", 5, 3 * BlockSize, 0, Params{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := os.Create(filepath.Join(dir, "a"))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			l, err := NewLevel0(tc.p, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			dataSize := produce(t, a, l, tc.seed, tc.size)
			data, err := os.ReadFile(a.Name())
			if err != nil {
				t.Fatal(err)
			}
			b := filepath.Join(dir, "b")
			if err := os.WriteFile(b, data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := AppendLevel0(context.Background(), a, dataSize, tc.p, l)
			if err != nil {
				t.Fatal(err)
			}
			want := appendFile(t, b, dataSize, tc.p)
			if !bytes.Equal(got.RootHash, want.RootHash) {
				t.Fatalf("root %x, Append's %x", got.RootHash, want.RootHash)
			}
			ga, _ := os.ReadFile(a.Name())
			gb, _ := os.ReadFile(b)
			if !bytes.Equal(ga, gb) {
				t.Fatalf("file differs from Append's (%d and %d bytes)", len(ga), len(gb))
			}
		})
	}
}

// TestAppendLevel0UsesDigests shows the known blocks are not read back: changing
// them behind the Level0's back leaves the root as it was, while a change that is
// reported as rewritten is seen.
func TestAppendLevel0UsesDigests(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	build := func(name string, secret, reported bool) []byte {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		l, err := NewLevel0(Params{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		l.Written(0, data)
		if secret {
			if _, err := f.WriteAt([]byte("changed"), 5*BlockSize); err != nil {
				t.Fatal(err)
			}
		}
		if reported {
			if _, err := f.WriteAt([]byte("patched"), 9*BlockSize+10); err != nil {
				t.Fatal(err)
			}
			l.Rewritten(9*BlockSize+10, 7)
		}
		info, err := AppendLevel0(context.Background(), f, int64(len(data)), Params{}, l)
		if err != nil {
			t.Fatal(err)
		}
		return info.RootHash
	}
	plain := build("plain", false, false)
	if got := build("secret", true, false); !bytes.Equal(got, plain) {
		t.Errorf("a block the Level0 knows was read back")
	}
	if got := build("patched", false, true); bytes.Equal(got, plain) {
		t.Errorf("a rewritten block was not read back")
	}
}

func TestLevel0BadInput(t *testing.T) {
	if _, err := NewLevel0(Params{}, -1); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("negative limit: %v", err)
	}
	if _, err := NewLevel0(Params{NoSalt: true, Salt: []byte{1}}, 0); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("salt and no salt: %v", err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 4*BlockSize)
	f.Write(data)
	l, _ := NewLevel0(Params{NoSalt: true}, 0)
	l.Written(0, data)
	if _, err := AppendLevel0(context.Background(), f, int64(len(data)), Params{}, l); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("other salt: %v", err)
	}
	// Past the end of the file: the blocks the Level0 does not know are missing.
	l, _ = NewLevel0(Params{}, 2*BlockSize)
	l.Written(0, data)
	if _, err := AppendLevel0(context.Background(), f, 8*BlockSize, Params{}, l); !errors.Is(err, ErrShortData) {
		t.Errorf("short file: %v", err)
	}
}
