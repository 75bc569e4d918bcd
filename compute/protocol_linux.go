package compute

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The monitor's protocol: one request and one response per connection, each a
// JSON message on a SOCK_SEQPACKET socket; file descriptors (stdio, a console
// master) travel with a message as SCM_RIGHTS.

type procRequest struct {
	Args     []string `json:"args"`
	Env      []string `json:"env,omitempty"`
	Cwd      string   `json:"cwd,omitempty"`
	Terminal bool     `json:"terminal,omitempty"`
	Width    uint16   `json:"width,omitempty"`
	Height   uint16   `json:"height,omitempty"`
	// Which descriptors follow, in this order.
	Stdin  bool `json:"stdin,omitempty"`
	Stdout bool `json:"stdout,omitempty"`
	Stderr bool `json:"stderr,omitempty"`
}

type request struct {
	Op      string        `json:"op"` // start exec signal wait shutdown kill resize ping
	Proc    *procRequest  `json:"proc,omitempty"`
	Pid     int           `json:"pid,omitempty"` // 0: the init process / the container
	Signal  int           `json:"signal,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	Width   uint16        `json:"width,omitempty"`
	Height  uint16        `json:"height,omitempty"`
}

// Error classes carried in a response.
const (
	classNotFound     = "notfound"
	classStopped      = "stopped"
	classInvalidState = "invalidstate"
	classInvalid      = "invalid"
	classNoConsole    = "noconsole"
	classUnsupported  = "unsupported"
)

type response struct {
	Err   string `json:"err,omitempty"`
	Class string `json:"class,omitempty"`
	Pid   int    `json:"pid,omitempty"`
	Exit  *Exit  `json:"exit,omitempty"`
}

func (r *response) error() error {
	if r.Err == "" {
		return nil
	}
	var class error
	switch r.Class {
	case classNotFound:
		class = ErrNotFound
	case classStopped:
		class = ErrStopped
	case classInvalidState:
		class = ErrInvalidState
	case classInvalid:
		class = ErrInvalidArgument
	case classNoConsole:
		class = ErrNoConsole
	case classUnsupported:
		class = ErrUnsupported
	}
	if class != nil {
		return fmt.Errorf("%w: %s", class, r.Err)
	}
	return errors.New(r.Err)
}

func errResponse(err error) *response {
	r := &response{Err: err.Error()}
	switch {
	case errors.Is(err, ErrNotFound):
		r.Class = classNotFound
	case errors.Is(err, ErrStopped):
		r.Class = classStopped
	case errors.Is(err, ErrInvalidState):
		r.Class = classInvalidState
	case errors.Is(err, ErrInvalidArgument):
		r.Class = classInvalid
	case errors.Is(err, ErrNoConsole):
		r.Class = classNoConsole
	case errors.Is(err, ErrUnsupported):
		r.Class = classUnsupported
	}
	return r
}

const maxMessage = 1 << 20

// send writes v and the descriptors files as one message.
func send(c *net.UnixConn, v any, files ...*os.File) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(data, oob, nil)
	return err
}

// receive reads one message into v and returns the descriptors that came with it.
func receive(c *net.UnixConn, v any) ([]*os.File, error) {
	size, err := messageSize(c)
	if err != nil {
		return nil, err
	}
	// One byte more than the message: a longer one is cut short, and fails.
	buf := make([]byte, min(size, maxMessage)+1)
	oob := make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				unix.CloseOnExec(fd)
				files = append(files, os.NewFile(uintptr(fd), "fd"))
			}
		}
	}
	if n == 0 {
		closeAll(files)
		return nil, fmt.Errorf("empty message: %w", net.ErrClosed)
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		closeAll(files)
		return nil, err
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// messageSize waits for the next message on c and returns its length (a
// SOCK_SEQPACKET peek with MSG_TRUNC), so that receive allocates what the
// message needs: a buffer of maxMessage for every request would be most of the
// monitor's heap, which lives as long as its container.
func messageSize(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		n    int
		rerr error
	)
	var one [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_TRUNC)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}
