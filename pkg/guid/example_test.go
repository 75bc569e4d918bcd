package guid_test

import (
	"encoding/json"
	"fmt"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

func ExampleNewV5() {
	g := guid.NewV5(guid.NamespaceDNS, []byte("www.example.com"))
	fmt.Println(g, g.Version(), g.Variant())
	// Output: 2ed6657d-e927-568b-95e1-2665a8aea6a2 5 RFC4122
}

func ExampleFromString() {
	g, err := guid.FromString("01020304-0506-0708-090A-0B0C0D0E0F10")
	if err != nil {
		panic(err)
	}
	be, win := g.ToArray(), g.ToWindowsArray()
	fmt.Println(g)
	fmt.Printf("% x\n", be[:8])
	fmt.Printf("% x\n", win[:8])

	_, err = guid.FromString("{01020304-0506-0708-090a-0b0c0d0e0f10}")
	fmt.Println(err)
	// Output:
	// 01020304-0506-0708-090a-0b0c0d0e0f10
	// 01 02 03 04 05 06 07 08
	// 04 03 02 01 06 05 08 07
	// guid: invalid GUID string "{01020304-0506-0708-090a-0b0c0d0e0f10}": braces are not accepted
}

func ExampleGUID_MarshalText() {
	b, _ := json.Marshal(map[string]guid.GUID{"LayerId": guid.LayerNamespace})
	fmt.Println(string(b))
	// Output: {"LayerId":"5afe54f1-1ab5-5b4d-93c2-62c26d143b03"}
}

func ExampleNameToGuid() {
	a := guid.NameToGuid("5")
	b := guid.NameToGuid("5")
	fmt.Println(a == b, a.Version())
	// Output: true 5
}
