package ociwclayer

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// BenchmarkImport and BenchmarkExport measure the library alone on a generated layer of
// 5000 files and 64 MiB. Comparisons with peers live in bench/.
func BenchmarkImport(b *testing.B) {
	var in bytes.Buffer
	sampletar.Write(&in, sampletar.Options{Seed: 1, Files: 5000, Bytes: 64 << 20, LargeFiles: 2})
	dir := b.TempDir()
	b.SetBytes(int64(in.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ImportLayerFromTar(context.Background(), bytes.NewReader(in.Bytes()), filepath.Join(dir, strconv.Itoa(i)), nil, winlayer.WithSync(false)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExport(b *testing.B) {
	var in bytes.Buffer
	sampletar.Write(&in, sampletar.Options{Seed: 1, Files: 5000, Bytes: 64 << 20, LargeFiles: 2})
	layer := filepath.Join(b.TempDir(), "l")
	if _, err := ImportLayerFromTar(context.Background(), bytes.NewReader(in.Bytes()), layer, nil, winlayer.WithSync(false)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(in.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ExportLayerToTar(context.Background(), io.Discard, layer, nil); err != nil {
			b.Fatal(err)
		}
	}
}
