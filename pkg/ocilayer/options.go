package ocilayer

import "fmt"

// ApplyOption configures Apply.
type ApplyOption func(*applyOptions) error

type applyOptions struct {
	skipDevices bool
	noOwnership bool
	maxFileSize int64
	standalone  bool // the target started empty: hard links name this layer's entries
}

// WithMaxFileSize makes Apply refuse regular files larger than n bytes (holes of
// sparse files included) with ErrTooLarge. The default is DefaultMaxFileSize.
func WithMaxFileSize(n int64) ApplyOption {
	return func(o *applyOptions) error {
		if n < 0 {
			return fmt.Errorf("ocilayer: negative maximum file size %d", n)
		}
		o.maxFileSize = n
		return nil
	}
}

// WithSkipDevices makes Apply skip character and block devices it is not
// permitted to create (mknod fails with EPERM, as in an unprivileged user
// namespace) instead of failing. Without it such an entry fails with an
// *EntryError matching ErrUnsupported and fs.ErrPermission.
func WithSkipDevices() ApplyOption {
	return func(o *applyOptions) error { o.skipDevices = true; return nil }
}

// WithoutOwnership makes Apply leave files owned by the calling user instead of
// applying the uid and gid of each entry. Use it when not running as root.
func WithoutOwnership() ApplyOption {
	return func(o *applyOptions) error { o.noOwnership = true; return nil }
}

// DiffOption configures Diff. There are no options yet; the type keeps the
// signature stable.
type DiffOption func(*diffOptions) error

type diffOptions struct{}
