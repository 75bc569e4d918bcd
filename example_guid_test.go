package hostcompute_test

import (
	"fmt"

	"github.com/hostcompute/hostcompute"
)

// NewGUID takes the first 16 bytes of the SHA-1 digest of its source; ToString reads
// them in Windows byte order.
func ExampleNewGUID() {
	g := hostcompute.NewGUID("abc")
	fmt.Printf("% x\n", g[:])
	fmt.Println(g.ToString())
	// Output:
	// a9 99 3e 36 47 06 81 6a ba 3e 25 71 78 50 c2 6c
	// 363e99a9-0647-6a81-ba3e-25717850c26c
}
