package compute

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestExitCodesAndStdio(t *testing.T) {
	t.Parallel()
	c := newContainer(t, nil)
	out, errOut, e := run(t, c, true, "hello\n", "sh", "-c", "read x; echo out:$x; echo err >&2; exit 7")
	if out != "out:hello\n" || errOut != "err\n" {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	if e.Code != 7 {
		t.Errorf("exit code %d, want 7", e.Code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ce, err := c.Wait(ctx)
	if err != nil || ce == nil || ce.Code != 7 {
		t.Fatalf("container wait: %v %+v", err, ce)
	}
	if _, err := c.Exec(ctx, &ProcessSpec{Args: []string{"true"}}); !errors.Is(err, ErrStopped) {
		t.Errorf("exec after stop: %v, want ErrStopped", err)
	}
}
