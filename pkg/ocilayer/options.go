package ocilayer

// ApplyOption configures Apply.
type ApplyOption func(*applyOptions) error

type applyOptions struct {
	skipDevices bool
	noOwnership bool
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
