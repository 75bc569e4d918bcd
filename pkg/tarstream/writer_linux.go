package tarstream

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyMode is how the kernel can copy file data into the Writer's output.
type copyMode int

const (
	copyNone  copyMode = iota
	copyRange          // copy_file_range: the output is a regular file
	copySend           // sendfile: the output is a pipe or a socket
)

// probeOutput chooses the kernel copy the output allows.
func probeOutput(out *os.File) copyMode {
	fi, err := out.Stat()
	if err != nil {
		return copyNone
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		return copyRange
	case m&(os.ModeNamedPipe|os.ModeSocket) != 0:
		return copySend
	}
	return copyNone
}

// kernelCopy copies n bytes of src from off to the output: at *outOff when it is
// not nil (advancing it), else at the output's current position. It returns the
// bytes copied and the mode to use from now on. When the kernel
// refuses the copy before any byte moved (a file system without the call, an
// output opened for appending), it returns 0, copyNone and no error: the caller copies through user space. It stops early, without an
// error, where src ends; the caller's own read then reports it.
func kernelCopy(mode copyMode, out, src *os.File, off, n int64, outOff *int64) (int64, copyMode, error) {
	srcConn, err := src.SyscallConn()
	if err != nil {
		return 0, copyNone, nil
	}
	outConn, err := out.SyscallConn()
	if err != nil {
		return 0, copyNone, nil
	}
	var done int64
	var cerr error
	err = srcConn.Control(func(sfd uintptr) {
		err := outConn.Write(func(dfd uintptr) bool {
			for done < n {
				chunk := int(min(n-done, 1<<30))
				o := off + done
				var k int
				var e error
				if mode == copyRange {
					k, e = unix.CopyFileRange(int(sfd), &o, int(dfd), outOff, chunk, 0)
				} else {
					if outOff != nil {
						// sendfile writes at the output's position.
						if _, e = unix.Seek(int(dfd), *outOff, io.SeekStart); e != nil {
							cerr = e
							return true
						}
					}
					k, e = unix.Sendfile(int(dfd), int(sfd), &o, chunk)
					if e == nil && outOff != nil {
						*outOff += int64(k)
					}
				}
				switch {
				case e == unix.EINTR:
					continue
				case e == unix.EAGAIN:
					return false // a non-blocking pipe is full: wait for it
				case e != nil:
					cerr = e
					return true
				case k == 0:
					return true // src ends here
				}
				done += int64(k)
			}
			return true
		})
		if err != nil && cerr == nil {
			cerr = err
		}
	})
	if err != nil && cerr == nil {
		cerr = err
	}
	if cerr != nil && done == 0 && refused(cerr) {
		if mode == copyRange {
			// copy_file_range refuses files on two file systems of a kind without
			// a copy of its own (ext4 to ext4 on another device); sendfile
			// splices between any two.
			return kernelCopy(copySend, out, src, off, n, outOff)
		}
		return 0, copyNone, nil
	}
	if cerr != nil {
		return done, mode, &os.PathError{Op: "copy into tar", Path: src.Name(), Err: cerr}
	}
	return done, mode, nil
}

// refused reports the errors with which the kernel declines a copy it cannot
// make, as opposed to a failure of the output or the input.
func refused(err error) bool {
	for _, e := range []error{unix.EINVAL, unix.EXDEV, unix.ENOSYS, unix.EOPNOTSUPP, unix.ENOTSUP, unix.EBADF, unix.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// positionalOutput reports whether the Writer may write out at explicit offsets
// (pwrite, copy_file_range with an output offset) from a second goroutine: out is
// a regular file not opened for appending. base is its current position, where the
// stream starts.
func positionalOutput(out *os.File) (base int64, ok bool) {
	fi, err := out.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	conn, err := out.SyscallConn()
	if err != nil {
		return 0, false
	}
	var flags int
	var ferr, serr error
	conn.Control(func(fd uintptr) {
		flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0)
		base, serr = unix.Seek(int(fd), 0, io.SeekCurrent)
	})
	if ferr != nil || serr != nil || flags&unix.O_APPEND != 0 {
		return 0, false
	}
	return base, true
}
