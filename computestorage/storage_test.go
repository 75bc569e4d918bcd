package computestorage

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The expected documents follow reference/windows-layers.md §7.2 and §7.3, and the
// LayerData examples there are the ones hcsshim sends for the overlay filter calls.
func TestJSON(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"empty LayerData", &LayerData{}, `{"SchemaVersion":{}}`},
		{"detach overlay", &LayerData{FilterType: UnionFS}, `{"SchemaVersion":{},"FilterType":"UnionFS"}`},
		{
			"attach overlay",
			&LayerData{
				Layers:     []Layer{{Id: "6f1a3c2e-4b5d-4e6f-8a9b-0c1d2e3f4a5b", Path: `\\?\Volume{0b8c5e2a-1d3f-4a5b-9c6d-7e8f9a0b1c2d}\Files`}},
				FilterType: UnionFS,
			},
			`{"SchemaVersion":{},"Layers":[{"Id":"6f1a3c2e-4b5d-4e6f-8a9b-0c1d2e3f4a5b","Path":"\\\\?\\Volume{0b8c5e2a-1d3f-4a5b-9c6d-7e8f9a0b1c2d}\\Files"}],"FilterType":"UnionFS"}`,
		},
		{
			"full LayerData",
			&LayerData{
				SchemaVersion: Version{Major: 2, Minor: 1},
				Layers: []Layer{
					{Id: "11111111-2222-3333-4444-555555555555", Path: "/layers/app", PathType: "AbsolutePath", Cache: "Disabled"},
					{Path: "/layers/base"},
				},
				FilterType: WCIFS,
			},
			`{"SchemaVersion":{"Major":2,"Minor":1},"Layers":[{"Id":"11111111-2222-3333-4444-555555555555","Path":"/layers/app","PathType":"AbsolutePath","Cache":"Disabled"},{"Path":"/layers/base"}],"FilterType":"WCIFS"}`,
		},
		{"zero Version", &Version{}, `{}`},
		{"zero Layer", &Layer{}, `{}`},
		{"zero ExportLayerOptions", &ExportLayerOptions{}, `{}`},
		{"writable ExportLayerOptions", &ExportLayerOptions{IsWritableLayer: true}, `{"IsWritableLayer":true}`},
		{"zero OsLayerOptions", &OsLayerOptions{}, `{}`},
		{"container OsLayerOptions", &OsLayerOptions{Type: OsLayerTypeContainer}, `{"Type":"Container"}`},
		{
			"full OsLayerOptions",
			&OsLayerOptions{Type: OsLayerTypeVM, DisableCiCacheOptimization: true, SkipUpdateBcdForBoot: true},
			`{"Type":"Vm","DisableCiCacheOptimization":true,"SkipUpdateBcdForBoot":true}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal = %s\nwant      %s", b, tt.want)
			}
			back := reflect.New(reflect.TypeOf(tt.v).Elem())
			if err := json.Unmarshal([]byte(tt.want), back.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Interface(), tt.v) {
				t.Errorf("Unmarshal(%s) = %+v, want %+v", tt.want, back.Elem(), reflect.ValueOf(tt.v).Elem())
			}
		})
	}
}

func TestParentPaths(t *testing.T) {
	tests := []struct {
		name string
		data LayerData
		want []string
	}{
		{"none", LayerData{}, nil},
		{"in order", LayerData{Layers: []Layer{{Id: "a", Path: "/l/parent"}, {Path: "/l/base"}}}, []string{"/l/parent", "/l/base"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.data.parentPaths(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parentPaths() = %q, want %q", got, tt.want)
			}
		})
	}
}
