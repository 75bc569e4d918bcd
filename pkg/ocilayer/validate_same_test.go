package ocilayer

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestValidatorSameAsReference runs random layers through the Validator and the
// map-based reference: every verdict and every error message must be the same.
func TestValidatorSameAsReference(t *testing.T) {
	comps := []string{"a", "b", "c", "d", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..wh.plnk", "..", "."}
	types := []EntryType{TypeReg, TypeDir, TypeDir, TypeSymlink, TypeLink, TypeFifo}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		standalone := seed%2 == 0
		var opts []ValidatorOption
		ref := newRefValidator()
		if standalone {
			opts = append(opts, WithoutBase())
			ref.standalone = true
		}
		v := NewValidator(opts...)
		randName := func() string {
			n := ""
			for i := range 1 + rng.IntN(4) {
				if i > 0 {
					n += "/"
				}
				n += comps[rng.IntN(len(comps))]
			}
			if rng.IntN(10) == 0 {
				n = "/" + n
			}
			return n
		}
		for step := range 400 {
			e := Entry{Name: randName(), Type: types[rng.IntN(len(types))], Size: int64(rng.IntN(3))}
			switch e.Type {
			case TypeLink:
				e.Linkname = randName()
			case TypeSymlink:
				e.Linkname = "x"
			}
			got, gerr := v.Check(&e)
			want, werr := ref.Check(&e)
			if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("seed %d step %d: %+v: got %+v %v, want %+v %v", seed, step, e, got, gerr, want, werr)
			}
		}
	}
}
