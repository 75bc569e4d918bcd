package computestorage_test

import (
	"encoding/json"
	"fmt"

	"github.com/hostcompute/hostcompute/computestorage"
)

// A LayerData document names the parent layers of a layer, immediate parent first.
func ExampleLayerData() {
	data := computestorage.LayerData{
		Layers: []computestorage.Layer{
			{Id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", Path: "/var/lib/layers/app"},
			{Id: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", Path: "/var/lib/layers/base"},
		},
		FilterType: computestorage.WCIFS,
	}
	b, _ := json.Marshal(data)
	fmt.Println(string(b))
	b, _ = json.Marshal(computestorage.LayerData{})
	fmt.Println(string(b))
	// Output:
	// {"SchemaVersion":{},"Layers":[{"Id":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d","Path":"/var/lib/layers/app"},{"Id":"1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","Path":"/var/lib/layers/base"}],"FilterType":"WCIFS"}
	// {"SchemaVersion":{}}
}
