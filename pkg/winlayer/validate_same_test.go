package winlayer

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// TestValidatorSameAsReference runs random layers through the Validator and the
// map-based reference: every result and every error message must be the same.
func TestValidatorSameAsReference(t *testing.T) {
	tops := []string{"Files", "Hives", "UtilityVM/Files", "files"}
	comps := []string{"a", "A", "b", "B", "c", "dir", "Dir", "x.txt"}
	// A parent layer with a fixed kind per folded name.
	parents := func(name string) Kind {
		h := fnv.New32a()
		h.Write([]byte(foldName(name)))
		return Kind(h.Sum32() % 5)
	}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 9))
		base := seed%3 == 0
		var lookup ParentLookup
		if !base && seed%3 == 1 {
			lookup = parents
		}
		v, ref := NewValidator(base, lookup), newRefValidator(base, lookup)
		randName := func() string {
			n := tops[rng.IntN(len(tops))]
			for range rng.IntN(4) {
				n += "/" + comps[rng.IntN(len(comps))]
			}
			return n
		}
		for step := range 400 {
			var got, want string
			var gerr, werr error
			switch op := rng.IntN(10); {
			case op < 5:
				e := &Entry{Name: randName()}
				if rng.IntN(2) == 0 {
					e.Info.FileAttributes = winfile.AttrDirectory
				} else {
					e.Size = int64(rng.IntN(3))
				}
				e2 := *e
				got, gerr = v.Add(e)
				want, werr = ref.Add(&e2)
			case op < 7:
				s := []string{"s", "S", "t"}[rng.IntN(3)]
				got, gerr = v.AddStream(s, 1)
				want, werr = ref.AddStream(s, 1)
			case op < 8:
				n, tg := randName(), randName()
				a, b, err := v.AddLink(n, tg)
				got, gerr = a+"|"+b, err
				a, b, err = ref.AddLink(n, tg)
				want, werr = a+"|"+b, err
			default:
				n := randName()
				got, gerr = v.Remove(n)
				want, werr = ref.Remove(n)
			}
			if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("seed %d step %d: got %q %v, want %q %v", seed, step, got, gerr, want, werr)
			}
		}
	}
}
