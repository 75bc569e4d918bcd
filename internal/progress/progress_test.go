package progress

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the ticker goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestForcedDraw(t *testing.T) {
	var out syncBuffer
	b := Start(&out, Config{Label: "export", Interval: time.Millisecond, Force: true})
	if !b.Enabled() {
		t.Fatal("forced bar is not enabled")
	}
	w := b.Writer(io.Discard)
	chunk := make([]byte, 4096)
	deadline := time.Now().Add(60 * time.Second) // ends at the third redraw
	for strings.Count(out.String(), "\r") < 3 && time.Now().Before(deadline) {
		w.Write(chunk)
		time.Sleep(time.Millisecond)
	}
	b.Stop()
	b.Stop() // idempotent
	got := out.String()
	if n := strings.Count(got, "\r"); n < 3 {
		t.Fatalf("%d redraws, want at least 3: %q", n, got)
	}
	if !strings.HasPrefix(got, "\rexport  ") || !strings.Contains(got, "/s  0:0") {
		t.Errorf("unexpected line: %q", got)
	}
	if !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("line not erased at the end: %q", got)
	}
	if strings.Contains(got, "%") {
		t.Errorf("percentage drawn with unknown total: %q", got)
	}
	after := out.String()
	time.Sleep(10 * time.Millisecond)
	if out.String() != after {
		t.Error("bar drew after Stop")
	}
}

func TestNotTerminal(t *testing.T) {
	var out syncBuffer
	b := Start(&out, Config{Label: "import", Total: 10, Interval: time.Millisecond})
	if b.Enabled() {
		t.Fatal("bar enabled on a buffer")
	}
	n, err := io.Copy(io.Discard, b.Reader(strings.NewReader("0123456789")))
	if err != nil || n != 10 {
		t.Fatalf("copy: %d, %v", n, err)
	}
	time.Sleep(5 * time.Millisecond)
	b.Stop()
	if b.N() != 10 {
		t.Errorf("counted %d bytes, want 10", b.N())
	}
	if s := out.String(); s != "" {
		t.Errorf("drew %q on a non-terminal", s)
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		name    string
		total   int64
		n       int64
		elapsed time.Duration
		want    string
	}{
		{"known total", 4 << 30, 1 << 30, 2 * time.Second, "import  1.00 GiB / 4.00 GiB   25%  512.0 MiB/s  0:02"},
		{"unknown total", 0, 3 << 20, 3*time.Minute + 5*time.Second, "import  3.00 MiB  16.6 KiB/s  3:05"},
		{"past total", 100, 150, time.Hour + 61*time.Second, "import  150 B / 100 B  100%  0 B/s  1:01:01"},
		{"zero time", 0, 0, 0, "import  0 B  0 B/s  0:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Bar{cfg: Config{Label: "import", Total: tt.total}}
			b.Add(tt.n)
			if got := b.Line(tt.elapsed); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestBytes(t *testing.T) {
	tests := map[int64]string{
		0:               "0 B",
		1023:            "1023 B",
		1024:            "1.00 KiB",
		1536:            "1.50 KiB",
		10 << 20:        "10.0 MiB",
		1095216660:      "1.02 GiB",
		3 << 40:         "3.00 TiB",
		5000 << 40:      "5000.0 TiB",
		1<<20 - 1:       "1.00 MiB",
		(1 << 30) + 512: "1.00 GiB",
	}
	for n, want := range tests {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
