package main

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/hostcompute/hostcompute/internal/progress"
)

// imageBars draws one progress bar per blob of a pull or push on stderr when it is
// a terminal (and --quiet is not given); elsewhere it draws nothing.
type imageBars struct {
	p     *mpb.Progress
	mu    sync.Mutex
	bars  map[string]*mpb.Bar
	notes map[string]*atomic.Value // what a finished bar shows: "fetched", "unpacked", ...
}

func (a *app) imageProgress() *imageBars {
	b := &imageBars{bars: map[string]*mpb.Bar{}, notes: map[string]*atomic.Value{}}
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
	note := &atomic.Value{}
	note.Store("")
	b.notes[id] = note
	pct := decor.Percentage(decor.WC{W: 5})
	b.bars[id] = b.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(label, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")),
		mpb.AppendDecorators(decor.Any(func(st decor.Statistics) string {
			if n := note.Load().(string); st.Completed || n != "" {
				return n
			}
			s, _ := pct.Decor(st)
			return s
		})),
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
	bar, n := b.bars[id], b.notes[id]
	b.mu.Unlock()
	if bar == nil {
		return
	}
	n.Store(note)
	if err != nil {
		bar.Abort(false)
		return
	}
	switch note {
	case "fetched", "unpacking": // a layer's bar ends when it is unpacked
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
	for id, bar := range b.bars {
		switch b.notes[id].Load().(string) {
		case "", "fetched", "unpacking": // the pull stopped before this bar's end
			bar.Abort(false)
		}
	}
	b.mu.Unlock()
	b.p.Wait()
}
