package dmverity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestAppendBadInput(t *testing.T) {
	cases := []struct {
		name string
		size int64 // file size
		data int64 // dataSize argument
		p    Params
		want error
	}{
		{"zero size", 8192, 0, Params{}, ErrInvalidParams},
		{"negative size", 8192, -4096, Params{}, ErrInvalidParams},
		{"partial block", 8192, 5000, Params{}, ErrInvalidParams},
		{"file too short", 8192, 12288, Params{}, ErrShortData},
		{"salt too long", 8192, 8192, Params{Salt: make([]byte, 257)}, ErrInvalidParams},
		{"salt and no salt", 8192, 8192, Params{Salt: []byte{1}, NoSalt: true}, ErrInvalidParams},
		{"uuid and random", 8192, 8192, Params{UUID: [16]byte{1}, RandomUUID: true}, ErrInvalidParams},
		{"hcsshim with a salt", 8192, 8192, Params{Hcsshim: true, Salt: []byte{1}}, ErrInvalidParams},
		{"hcsshim without salt", 8192, 8192, Params{Hcsshim: true, NoSalt: true}, ErrInvalidParams},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img")
			want := bytes.Repeat([]byte{0xab}, int(tc.size))
			if err := os.WriteFile(path, want, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Append(f, tc.data, tc.p)
			f.Close()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Append = %v, want %v", err, tc.want)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
				t.Errorf("Append changed the file on bad input")
			}
		})
	}
}

func TestComputeShortReader(t *testing.T) {
	_, err := Compute(context.Background(), bytes.NewReader(make([]byte, 3*chunkSize+100)), 4*chunkSize, Params{}, nil)
	if !errors.Is(err, ErrShortData) {
		t.Fatalf("Compute on a short reader = %v, want ErrShortData", err)
	}
}

func TestComputeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Compute(ctx, bytes.NewReader(make([]byte, 4*chunkSize)), 4*chunkSize, Params{}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Compute with a cancelled context = %v", err)
	}
}

// TestDeterministic: the same data gives the same bytes, and the derived UUID
// is a version 5 UUID that changes with the data.
func TestDeterministic(t *testing.T) {
	size := int64(300 * BlockSize)
	a := writeData(t, size, 5)
	b := writeData(t, size, 5)
	c := writeData(t, size, 6)
	ia, ib, ic := appendFile(t, a, size, Params{}), appendFile(t, b, size, Params{}), appendFile(t, c, size, Params{})
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ba, bb) || ia.UUID != ib.UUID {
		t.Fatal("the same data gave different images")
	}
	if ia.UUID == ic.UUID {
		t.Error("different data gave the same UUID")
	}
	if v := ia.UUID[6] >> 4; v != 5 || ia.UUID[8]&0xc0 != 0x80 {
		t.Errorf("UUID %x is not an RFC 4122 version 5 UUID", ia.UUID)
	}
	// Workers do not change the result.
	for _, w := range []int{1, 3, 8} {
		info, err := Compute(context.Background(), bytes.NewReader(ba[:size]), size, Params{Workers: w}, nil)
		if err != nil || !bytes.Equal(info.RootHash, ia.RootHash) {
			t.Errorf("Workers %d: %v, root %x, want %x", w, err, info.RootHash, ia.RootHash)
		}
	}
	// A given UUID is written as is; RandomUUID differs from the derived one.
	u := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	info, err := Compute(context.Background(), bytes.NewReader(ba[:size]), size, Params{UUID: u}, nil)
	if err != nil || info.UUID != u {
		t.Errorf("Params.UUID: %v, got %x", err, info.UUID)
	}
	info, err = Compute(context.Background(), bytes.NewReader(ba[:size]), size, Params{RandomUUID: true}, nil)
	if err != nil || info.UUID == ia.UUID || info.UUID == [16]byte{} {
		t.Errorf("Params.RandomUUID: %v, got %x", err, info.UUID)
	}
}

// TestSaltVariants: the salt is prepended (hash type 1), and no salt is not the
// same as hcsshim's zero salt.
func TestSaltVariants(t *testing.T) {
	data := bytes.Repeat([]byte{7}, BlockSize*2)
	top := func(salt []byte) []byte {
		var level0 [BlockSize]byte
		for i := range 2 {
			h := sha256.New()
			h.Write(salt)
			h.Write(data[i*BlockSize : (i+1)*BlockSize])
			copy(level0[i*DigestSize:], h.Sum(nil))
		}
		h := sha256.New()
		h.Write(salt)
		h.Write(level0[:])
		return h.Sum(nil)
	}
	for name, tc := range map[string]struct {
		p    Params
		salt []byte
	}{
		"default":  {Params{}, make([]byte, 32)},
		"hcsshim":  {Params{Hcsshim: true}, make([]byte, 32)},
		"no salt":  {Params{NoSalt: true}, nil},
		"own salt": {Params{Salt: []byte("pepper")}, []byte("pepper")},
	} {
		info, err := Compute(context.Background(), bytes.NewReader(data), int64(len(data)), tc.p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := top(tc.salt); !bytes.Equal(info.RootHash, want) {
			t.Errorf("%s: root %x, want %x", name, info.RootHash, want)
		}
	}
}

// TestHcsshimOneBlock: hcsshim writes a one-block tree for a single data block,
// where dm-verity has no tree at all; Params.Hcsshim reproduces it.
func TestHcsshimOneBlock(t *testing.T) {
	path := writeData(t, BlockSize, 9)
	info := appendFile(t, path, BlockSize, Params{Hcsshim: true})
	if len(info.Levels) != 1 || info.TreeSize != BlockSize {
		t.Fatalf("levels %v, tree %d bytes; want hcsshim's single level-0 block", info.Levels, info.TreeSize)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Verify(f, info); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestTable(t *testing.T) {
	info, err := Compute(context.Background(), bytes.NewReader(make([]byte, 130*BlockSize)), 130*BlockSize, Params{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	info.HashOffset = 131 * BlockSize // as Append places it
	want := "0 1040 verity 1 /dev/loop0 /dev/loop0 4096 4096 130 131 sha256 " + info.RootHashHex() + " " + info.SaltHex()
	if got := info.Table("/dev/loop0", "/dev/loop0"); got != want {
		t.Errorf("Table =\n%s\nwant\n%s", got, want)
	}
}

// TestAppendMemoryBounded: Append allocates its chunk pool and one hash block per
// level, not the data or the tree (2 MiB here).
func TestAppendMemoryBounded(t *testing.T) {
	const size = 256 << 20
	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	const workers = 2
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	info, err := Append(f, size, Params{Workers: workers})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	pool := uint64(workers+2) * (chunkSize + chunkSize/hashesPerBlock)
	t.Logf("allocated %d bytes, pool %d", after.TotalAlloc-before.TotalAlloc, pool)
	if got, limit := after.TotalAlloc-before.TotalAlloc, pool+1<<20; got > limit {
		t.Errorf("Append of %d MiB allocated %d bytes, more than the pool (%d) plus 1 MiB; the tree is %d bytes",
			size>>20, got, pool, info.TreeSize)
	}
}
