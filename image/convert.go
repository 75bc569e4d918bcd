package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hostcompute/hostcompute/internal/compress"
	"github.com/hostcompute/hostcompute/pkg/dmverity"
	"github.com/hostcompute/hostcompute/pkg/ext4"
	cimlayer "github.com/hostcompute/hostcompute/pkg/ociwclayer/cim"
	"github.com/hostcompute/hostcompute/pkg/vhd"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

// Conversion targets of Convert.
const (
	// ToCIM makes a CIM layer of every Windows layer, each forking its parent's
	// CIM: <dir>/<chainID hex>/ with the CIM in <dir>/cim-layers/.
	ToCIM = "cim"
	// ToExt4 makes an ext4 image of every Linux layer, whiteouts kept as overlay
	// whiteouts, with a fixed VHD footer: <dir>/<chainID hex>/layer.vhd (and a
	// dm-verity tree before the footer when asked).
	ToExt4 = "ext4"
)

// ConvertReport says what Convert made.
type ConvertReport struct {
	Image  string           `json:"image"`
	Digest string           `json:"digest"`
	To     string           `json:"to"`
	Dir    string           `json:"dir"`
	Layers []ConvertedLayer `json:"layers"`
}

// ConvertedLayer is one converted layer.
type ConvertedLayer struct {
	Digest  string `json:"digest"`
	DiffID  string `json:"diffID"`
	ChainID string `json:"chainID"`
	// Layer is the layer folder (CIM) or image file (ext4) made.
	Layer string `json:"layer"`
	// File is the converted file: the .cim, or layer.vhd.
	File string `json:"file"`
	// SHA256 is the digest of File.
	SHA256 string `json:"sha256"`
	// RootHash is the dm-verity root hash of an ext4 layer made with verity.
	RootHash string `json:"rootHash,omitempty"`
	Size     int64  `json:"size"`
	// Warnings name the steps of a CIM layer's processing that Linux cannot
	// do (wcim.IsWrittenWithLimits: delta hive merging, utility VM boot);
	// the CIM itself is complete.
	Warnings []string `json:"warnings,omitempty"`
}

// Convert converts every layer of the stored image n ahead of time into dir: to
// CIMs (Windows images) or ext4 layer images (Linux images), as the layer's own
// content over its parents. Output is deterministic: the same image gives the same
// bytes. Layers already converted in dir (by chainID) are kept. verity adds a
// dm-verity hash tree to ext4 layers.
func (s *Store) Convert(ctx context.Context, n, to, dir string, verity bool) (*ConvertReport, error) {
	d, nm, err := s.lookup(n)
	if err != nil {
		return nil, err
	}
	if d.MediaType.IsIndex() {
		return nil, fmt.Errorf("image %s: %w: convert an image, not an index (pull one platform)", n, ErrUnsupported)
	}
	sum, err := s.describe(ctx, d)
	if err != nil {
		return nil, &Error{Image: n, Op: "convert", Err: err}
	}
	osName := sum.Platform.OS
	switch {
	case to == ToCIM && osName != "windows":
		return nil, fmt.Errorf("image %s: %w: CIMs are made of Windows layers; this is a %s image", n, ErrUnsupported, osName)
	case to == ToExt4 && osName == "windows":
		return nil, fmt.Errorf("image %s: %w: ext4 layer images are made of Linux layers; this is a Windows image", n, ErrUnsupported)
	case to != ToCIM && to != ToExt4:
		return nil, fmt.Errorf("image %s: %w: convert to %q (want cim or ext4)", n, ErrUnsupported, to)
	case verity && to != ToExt4:
		return nil, fmt.Errorf("image %s: %w: dm-verity is for ext4 layers", n, ErrUnsupported)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rep := &ConvertReport{Image: nm, Digest: sum.Digest, To: to, Dir: dir, Layers: []ConvertedLayer{}}
	var parents []string // immediate parent first
	for _, l := range sum.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		layer := filepath.Join(dir, strings.TrimPrefix(l.ChainID, "sha256:"))
		cl := ConvertedLayer{Digest: l.Digest, DiffID: l.DiffID, ChainID: l.ChainID, Layer: layer}
		var err error
		if to == ToCIM {
			err = s.convertCIM(ctx, l, layer, parents, &cl)
		} else {
			err = s.convertExt4(ctx, l, layer, verity, &cl)
		}
		if err != nil {
			return nil, &Error{Image: n, Op: "convert layer to " + to, Digest: l.Digest, Err: err}
		}
		rep.Layers = append(rep.Layers, cl)
		parents = append([]string{layer}, parents...)
	}
	return rep, nil
}

// layerReader opens a stored layer blob uncompressed, checking its diffID.
func (s *Store) layerReader(l LayerSummary) (*verifyReader, func(), error) {
	h, err := v1.NewHash(l.Digest)
	if err != nil {
		return nil, nil, err
	}
	f, err := s.content.open(h)
	if err != nil {
		return nil, nil, err
	}
	zr, err := compress.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	want, err := v1.NewHash(l.DiffID)
	if err != nil {
		zr.Close()
		f.Close()
		return nil, nil, err
	}
	return newVerifyReader(zr, want), func() { zr.Close(); f.Close() }, nil
}

func (s *Store) convertCIM(ctx context.Context, l LayerSummary, layer string, parents []string, cl *ConvertedLayer) error {
	cl.File = wcim.GetCimPathFromLayer(layer)
	if _, err := os.Stat(cl.File); err != nil {
		vr, done, err := s.layerReader(l)
		if err != nil {
			return err
		}
		defer done()
		if _, err := cimlayer.ImportCimLayerFromTar(ctx, vr, layer, parents); wcim.IsWrittenWithLimits(err) {
			cl.Warnings = append(cl.Warnings, err.Error())
		} else if err != nil {
			return err
		}
		if err := vr.drain(); err != nil {
			wcim.DestroyCimLayer(ctx, layer)
			return err
		}
	}
	return fileDigest(cl)
}

func (s *Store) convertExt4(ctx context.Context, l LayerSummary, layer string, verity bool, cl *ConvertedLayer) error {
	cl.File = filepath.Join(layer, "layer.vhd")
	roothash := filepath.Join(layer, "root-hash")
	if _, err := os.Stat(cl.File); err == nil {
		if b, err := os.ReadFile(roothash); err == nil {
			cl.RootHash = strings.TrimSpace(string(b))
		}
		if verity && cl.RootHash == "" || !verity && cl.RootHash != "" {
			return fmt.Errorf("%s exists, made %s dm-verity; convert into another directory", cl.File, map[bool]string{true: "with", false: "without"}[cl.RootHash != ""])
		}
		return fileDigest(cl)
	}
	vr, done, err := s.layerReader(l)
	if err != nil {
		return err
	}
	defer done()
	stage := layer + ".stage"
	os.RemoveAll(stage)
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	f, err := os.Create(filepath.Join(stage, "layer.vhd"))
	if err != nil {
		return err
	}
	defer f.Close()
	var opts = []ext4.Option{ext4.WithConvertWhiteouts()}
	params := dmverity.Params{}
	var level0 *dmverity.Level0
	if verity {
		if level0, err = dmverity.NewLevel0(params, 0); err != nil {
			return err
		}
		opts = append(opts, ext4.WithWriteObserver(level0))
	}
	res, err := ext4.Build(ctx, f, vr, opts...)
	if err != nil {
		return err
	}
	if err := vr.drain(); err != nil {
		return err
	}
	size := res.Size
	var rootHash []byte
	if verity {
		info, err := dmverity.AppendLevel0(ctx, f, res.Size, params, level0)
		if err != nil {
			return err
		}
		size, rootHash = info.End(), info.RootHash
		cl.RootHash = info.RootHashHex()
		if err := os.WriteFile(filepath.Join(stage, "root-hash"), []byte(cl.RootHash+"\n"), 0o644); err != nil {
			return err
		}
	}
	// The footer's unique ID comes from the layer and the root hash, so the same
	// layer gives the same bytes.
	idSum := sha256.Sum256(append([]byte(l.DiffID), rootHash...))
	var id [16]byte
	copy(id[:], idSum[:])
	if err := vhd.AppendFixedFooter(f, size, vhd.NewFixedFooter(size, vhd.Epoch, id)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(stage, layer); err != nil {
		return err
	}
	syncDir(filepath.Dir(layer))
	return fileDigest(cl)
}

func fileDigest(cl *ConvertedLayer) error {
	f, err := os.Open(cl.File)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	cl.SHA256, cl.Size = "sha256:"+hex.EncodeToString(h.Sum(nil)), n
	return nil
}

var _ = bytes.Equal
