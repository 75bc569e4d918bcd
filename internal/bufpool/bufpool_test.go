package bufpool

import (
	"testing"
	"time"
)

func TestPoolBoundsAndReuses(t *testing.T) {
	p := New(2, 16)
	a, b := p.Get(3), p.Get(16)
	if len(a) != 3 || cap(a) != 16 || len(b) != 16 {
		t.Fatalf("lengths %d/%d, caps %d", len(a), len(b), cap(a))
	}
	got := make(chan []byte)
	go func() { got <- p.Get(1) }()
	select {
	case <-got:
		t.Fatal("Get returned a third buffer from a pool of two")
	case <-time.After(50 * time.Millisecond):
	}
	a[0] = 42
	p.Put(a)
	c := <-got
	if &c[:1][0] != &a[0] {
		t.Error("Put buffer was not reused")
	}
	p.Put(b)
	p.Put(c)
}
