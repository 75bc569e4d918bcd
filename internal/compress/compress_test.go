package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func compressed(t *testing.T, f Format, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sample() []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(rng.IntN(16)) // compressible
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	data := sample()
	for _, f := range []Format{None, Gzip, Zstd} {
		t.Run(f.String(), func(t *testing.T) {
			c := compressed(t, f, data)
			if f != None && len(c) >= len(data) {
				t.Errorf("compressed size %d, not below %d", len(c), len(data))
			}
			rc, got, err := NewReaderFormat(iotest.HalfReader(bytes.NewReader(c)))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if got != f {
				t.Errorf("detected %v, want %v", got, f)
			}
			out, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Errorf("decompressed %d bytes differ from the %d written", len(out), len(data))
			}
		})
	}
}

func TestShortPlainInput(t *testing.T) {
	for _, in := range []string{"", "a", "\x1f", "\x28\xb5\x2f"} {
		rc, err := NewReader(bytes.NewReader([]byte(in)))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		out, err := io.ReadAll(rc)
		if err != nil || string(out) != in {
			t.Errorf("%q: read %q, %v", in, out, err)
		}
	}
}

func TestUnsupported(t *testing.T) {
	for name, in := range map[string][]byte{"xz": append(magicXz, 1, 2, 3), "bzip2": []byte("BZh91AY&SY")} {
		_, err := NewReader(bytes.NewReader(in))
		if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: got %v, want ErrUnsupported", name, err)
		}
	}
}

func TestCorrupt(t *testing.T) {
	data := sample()
	for _, f := range []Format{Gzip, Zstd} {
		c := compressed(t, f, data)
		t.Run(f.String()+"/truncated", func(t *testing.T) {
			rc, err := NewReader(bytes.NewReader(c[:len(c)/2]))
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("got %v, want ErrCorrupt and io.ErrUnexpectedEOF", err)
			}
		})
		t.Run(f.String()+"/garbled", func(t *testing.T) {
			bad := bytes.Clone(c)
			for i := 16; i < len(bad)-16; i += 7 {
				bad[i] ^= 0x5a
			}
			rc, err := NewReader(bytes.NewReader(bad))
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestSourceError checks that an error of the underlying reader is not reported as
// corrupt data.
func TestSourceError(t *testing.T) {
	errSource := errors.New("source failed")
	data := sample()
	for _, f := range []Format{None, Gzip, Zstd} {
		c := compressed(t, f, data)
		r := io.MultiReader(bytes.NewReader(c[:len(c)/2]), iotest.ErrReader(errSource))
		rc, err := NewReader(r)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		if !errors.Is(err, errSource) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%v: got %v, want the source error unwrapped", f, err)
		}
	}
}
