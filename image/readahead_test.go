package image

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestReadAhead(t *testing.T) {
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	for _, size := range []int{1, 7, 4096, 1 << 20, 2 << 20} {
		ra := newReadAhead(iotest.HalfReader(bytes.NewReader(data)), 3, size)
		if err := iotest.TestReader(ra, data); err != nil {
			t.Errorf("buffer size %d: %v", size, err)
		}
		ra.Close()
	}
	boom := errors.New("boom")
	ra := newReadAhead(io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(boom)), 2, 64)
	if got, err := io.ReadAll(ra); !errors.Is(err, boom) || !bytes.Equal(got, data[:100]) {
		t.Errorf("after a source error: %d bytes, %v", len(got), err)
	}
	ra.Close()
	ra.Close()
}
