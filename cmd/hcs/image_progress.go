package main

import (
	"io"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/hostcompute/hostcompute/internal/progress"
)

// imageBars draws one progress bar per blob of a pull or push on stderr when it is
// a terminal (and --quiet is not given); elsewhere it draws nothing.
type imageBars struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*mpb.Bar
}

func (a *app) imageProgress() *imageBars {
	b := &imageBars{bars: map[string]*mpb.Bar{}}
	if a.quiet || !(a.forceProgress || progress.IsTerminal(a.stderr)) {
		return b
	}
	out := a.stderr
	if out == nil {
		out = io.Discard
	}
	b.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40))
	return b
}

func (b *imageBars) Start(id, what string, total int64) {
	if b.p == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.bars[id]; ok {
		return
	}
	label := what + " " + shortHex(id)
	b.bars[id] = b.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(label, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.OnComplete(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), "")),
		mpb.AppendDecorators(decor.OnComplete(decor.Percentage(decor.WC{W: 5}), "")),
	)
}

func (b *imageBars) Add(id string, n int64) {
	if b.p == nil {
		return
	}
	b.mu.Lock()
	bar := b.bars[id]
	b.mu.Unlock()
	if bar != nil {
		bar.IncrInt64(n)
	}
}

func (b *imageBars) Done(id, note string, err error) {
	if b.p == nil {
		return
	}
	b.mu.Lock()
	bar := b.bars[id]
	b.mu.Unlock()
	if bar == nil {
		return
	}
	if err != nil {
		bar.Abort(false)
		return
	}
	bar.SetTotal(-1, true)
}

// Wait stops drawing once every bar has ended.
func (b *imageBars) Wait() {
	if b.p == nil {
		return
	}
	b.mu.Lock()
	for _, bar := range b.bars {
		if !bar.Completed() {
			bar.Abort(false)
		}
	}
	b.mu.Unlock()
	b.p.Wait()
}
