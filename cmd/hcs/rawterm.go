package main

import "golang.org/x/sys/unix"

// rawTerminal puts the terminal fd in raw mode, as cfmakeraw(3) does, and
// returns what restores its settings. Two things differ from containerd's
// console.SetRaw, each a visible fault of `hcs run -t`:
//
//   - Output processing (OPOST) is off too: the container's own terminal has
//     turned each "\n" into "\r\n" already, and this one would add a second
//     "\r".
//   - Pending input is discarded (TCSETSF, tcsetattr's TCSAFLUSH). An
//     end-of-file that reached the terminal in canonical mode (a ^D typed
//     ahead, or what script(1) and other pty drivers send when their input
//     ends) sits in the line discipline's buffer as a marker byte, and leaving
//     canonical mode turns that marker into a NUL read by the next read: it
//     went to the container, whose terminal echoed it as "^@" before anything
//     else.
func rawTerminal(fd int) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETSF, &t); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETSW, old) }, nil
}
