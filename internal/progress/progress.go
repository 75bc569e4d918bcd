// Package progress draws a one-line progress indicator for a byte stream on a terminal:
// bytes done, the total and percentage when the total is known, the average rate and
// the elapsed time. The line is redrawn from a ticker goroutine at most once per
// interval and erased by Stop, so the stream itself only adds to an atomic counter.
//
// A Bar whose output is not a terminal draws nothing, unless Config.Force is set (for
// tests); it still counts.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// DefaultInterval is the redraw interval when Config.Interval is zero.
const DefaultInterval = 200 * time.Millisecond

// Config describes a Bar.
type Config struct {
	// Label starts the line, e.g. "import".
	Label string
	// Total is the number of bytes expected, or 0 when unknown.
	Total int64
	// Interval between redraws (DefaultInterval when zero).
	Interval time.Duration
	// Force draws even when the output is not a terminal.
	Force bool
}

// Bar counts bytes and draws the progress line. Its methods are safe for concurrent
// use; Reader and Writer wrappers may be used from one goroutine while the ticker draws.
type Bar struct {
	cfg   Config
	out   io.Writer // nil: counting only
	start time.Time
	n     atomic.Int64

	stopOnce sync.Once
	done     chan struct{}
	drawn    chan struct{} // closed when the ticker goroutine has exited
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Start returns a Bar that draws on out until Stop is called.
func Start(out io.Writer, cfg Config) *Bar {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	b := &Bar{cfg: cfg, start: time.Now(), done: make(chan struct{}), drawn: make(chan struct{})}
	if !cfg.Force && !IsTerminal(out) {
		close(b.drawn)
		return b
	}
	b.out = out
	go b.run()
	return b
}

// Enabled reports whether the bar draws.
func (b *Bar) Enabled() bool { return b.out != nil }

func (b *Bar) run() {
	defer close(b.drawn)
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			fmt.Fprint(b.out, "\r\x1b[K")
			return
		case <-t.C:
			fmt.Fprint(b.out, "\r"+b.Line(time.Since(b.start))+"\x1b[K")
		}
	}
}

// Add counts n more bytes.
func (b *Bar) Add(n int64) { b.n.Add(n) }

// N returns the bytes counted so far.
func (b *Bar) N() int64 { return b.n.Load() }

// Stop erases the line and ends the ticker goroutine. It may be called more than once.
func (b *Bar) Stop() {
	b.stopOnce.Do(func() { close(b.done) })
	<-b.drawn
}

// Line renders the progress line for the count so far after elapsed time.
func (b *Bar) Line(elapsed time.Duration) string {
	n := b.n.Load()
	s := b.cfg.Label + "  " + Bytes(n)
	if b.cfg.Total > 0 {
		pct := min(100*float64(n)/float64(b.cfg.Total), 100)
		s += fmt.Sprintf(" / %s  %3.0f%%", Bytes(b.cfg.Total), pct)
	}
	rate := 0.0
	if sec := elapsed.Seconds(); sec > 0 {
		rate = float64(n) / sec
	}
	return s + fmt.Sprintf("  %s/s  %s", Bytes(int64(rate)), clock(elapsed))
}

// Reader returns r counting into b.
func (b *Bar) Reader(r io.Reader) io.Reader { return &reader{r: r, b: b} }

// Writer returns w counting into b.
func (b *Bar) Writer(w io.Writer) io.Writer { return &writer{w: w, b: b} }

type reader struct {
	r io.Reader
	b *Bar
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.b.n.Add(int64(n))
	return n, err
}

type writer struct {
	w io.Writer
	b *Bar
}

func (w *writer) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.b.n.Add(int64(n))
	return n, err
}

// Bytes formats n with binary units: "512 B", "1.5 KiB", "1.02 GiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= unit
		if v < unit-0.05 || u == "TiB" { // 1023.96 KiB prints as 1.00 MiB, not 1024.0 KiB
			if v < 10 {
				return fmt.Sprintf("%.2f %s", v, u)
			}
			return fmt.Sprintf("%.1f %s", v, u)
		}
	}
	panic("unreachable")
}

// clock formats d as m:ss, or h:mm:ss from one hour.
func clock(d time.Duration) string {
	s := int64(d.Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
