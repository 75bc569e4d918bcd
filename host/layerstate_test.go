package host

import (
	"path/filepath"
	"testing"
)

// FuzzParseRecord: whatever a state file holds, a record is accepted only if
// it names the layer asked for with counts the engine can act on.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"version":1,"kind":"layer","path":"/l","disk":"/l/sandbox.vhdx","activations":2,"prepares":1,"parents":["/p"]}`), "layer")
	f.Add([]byte(`{"version":1,"kind":"overlay","path":"/l","prepares":3}`), "overlay")
	f.Add([]byte(`{"version":1,"kind":"layer","path":"/l","pending":true}`), "layer")
	f.Add([]byte(`{"version":2}`), "layer")
	f.Add([]byte(`[`), "overlay")
	f.Fuzz(func(t *testing.T, data []byte, kind string) {
		r, err := parseRecord(data, "/l", kind)
		if err != nil {
			return
		}
		if r.Path != "/l" || r.Kind != kind || r.Version != 1 || r.Activations < 0 || r.Prepares < 0 {
			t.Fatalf("accepted %+v", r)
		}
		if kind == kindLayer && (r.Activations > 0 || r.Pending) && !filepath.IsAbs(r.Disk) {
			t.Fatalf("accepted an active layer without a disk: %+v", r)
		}
		for _, p := range r.Parents {
			if !filepath.IsAbs(p) {
				t.Fatalf("accepted parent %q", p)
			}
		}
	})
}
