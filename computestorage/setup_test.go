package computestorage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func baseLayer(t *testing.T) string {
	t.Helper()
	layer := t.TempDir()
	config := filepath.Join(layer, "Files", "Windows", "System32", "config")
	if err := os.MkdirAll(config, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"SYSTEM", "SOFTWARE", "SAM", "SECURITY"} {
		os.WriteFile(filepath.Join(config, h), []byte("regf "+h), 0o644)
	}
	// Case differs from the name looked for, as it may in real images.
	os.WriteFile(filepath.Join(config, "default"), []byte("regf DEFAULT"), 0o644)
	return layer
}

func TestSetupBaseOSLayerContainer(t *testing.T) {
	ctx := context.Background()
	layer := baseLayer(t)
	if err := SetupBaseOSLayer(ctx, layer, nil, OsLayerOptions{Type: OsLayerTypeContainer}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"SYSTEM_BASE": "regf SYSTEM", "SOFTWARE_BASE": "regf SOFTWARE", "SAM_BASE": "regf SAM",
		"SECURITY_BASE": "regf SECURITY", "DEFAULTUSER_BASE": "regf DEFAULT",
	} {
		b, err := os.ReadFile(filepath.Join(layer, "Hives", name))
		if err != nil || string(b) != want {
			t.Errorf("Hives/%s: %q, %v", name, b, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(layer, LayoutFile)); err != nil || string(b) != "vhd-with-hives\n" {
		t.Errorf("Layout: %q, %v", b, err)
	}
	// A second setup finds Hives and refuses, as Windows does.
	if err := SetupBaseOSLayer(ctx, layer, nil, OsLayerOptions{Type: OsLayerTypeContainer}); !errors.Is(err, os.ErrExist) {
		t.Errorf("second setup: %v", err)
	}
	entries, _ := os.ReadDir(layer)
	for _, e := range entries {
		if e.Name() != "Files" && e.Name() != "Hives" && e.Name() != LayoutFile {
			t.Errorf("left in the layer: %s", e.Name())
		}
	}
}

func TestSetupBaseOSLayerErrors(t *testing.T) {
	ctx := context.Background()
	layer := baseLayer(t)
	os.Remove(filepath.Join(layer, "Files", "Windows", "System32", "config", "SAM"))
	err := SetupBaseOSLayer(ctx, layer, nil, OsLayerOptions{Type: OsLayerTypeContainer})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing hive: %v", err)
	}
	if _, err := os.Stat(filepath.Join(layer, "Hives")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed setup left Hives")
	}
	if _, err := os.Stat(filepath.Join(layer, LayoutFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed setup left Layout")
	}
	err = SetupBaseOSLayer(ctx, baseLayer(t), nil, OsLayerOptions{Type: OsLayerTypeVM})
	if !errors.Is(err, ErrWindowsOnly) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("VM layer: %v", err)
	}
	if err := SetupBaseOSVolume(ctx, baseLayer(t), filepath.Join(t.TempDir(), "nope"), OsLayerOptions{Type: OsLayerTypeContainer}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing volume: %v", err)
	}
	if err := SetupBaseOSVolume(ctx, baseLayer(t), t.TempDir(), OsLayerOptions{Type: OsLayerTypeContainer}); err != nil {
		t.Errorf("SetupBaseOSVolume: %v", err)
	}
}
