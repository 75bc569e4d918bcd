// Package fusefs runs FUSE file systems in helper processes that outlive the
// program that asked for them, and keeps a record of each one on disk so that
// any later process can list, unmount or clean them up.
//
// # Model
//
// A file system kind is a name ("vhd-raw", "cim", ...) and an [OpenFunc] that
// builds the go-fuse root node for a [Request]. Packages register their kinds
// with [Register] (Linux only, like go-fuse) from an init function. [Mount]
// does not serve anything in the calling process: it re-executes the running
// binary (/proc/self/exe) as a helper, in a new session with its standard streams detached, and waits until
// the helper reports that the kernel has the mount, or reports why it failed.
// The helper looks the kind up, opens the source, mounts, writes the record and
// serves until the file system is unmounted, then closes the source, removes
// its state directory and exits.
//
// Because the helper is the same binary, every program that calls Mount must
// call [MaybeRunHelper] first thing in main, and every test binary that does so
// must call it first in TestMain:
//
//	func main() {
//		fusefs.MaybeRunHelper()
//		...
//	}
//
// MaybeRunHelper returns at once in a normal run; in a helper run it serves
// and exits. The kinds a helper can serve are the ones registered in that
// binary, so the package that registers a kind must be linked in.
//
// # State on disk
//
// Each mount has a directory StateDir()/<id>/ (by default
// /run/hostcompute/fuse/<id>/; fuse/ under $HOSTCOMPUTE_STATE_DIR when set) holding:
//
//   - lock: a file the helper keeps locked with flock(2) for as long as it
//     lives (the caller holds it too until the helper is up). A directory whose
//     lock can be taken belongs to nobody and is stale.
//   - record.json: a [Record] (pid, kind, source, mount point, ...), written
//     by the helper once the mount is ready, through a temporary file that is
//     synced and renamed into place. A directory without it is a helper that
//     is still starting (or a caller that died before starting one).
//   - helper.log: the helper's standard output and error.
//   - mnt: the mount point, when the request names none.
//
// The kernel's view of a mount is the source of truth: each mount has file
// system type "fuse.hostcompute" and source "hostcompute:<id>" in
// /proc/self/mountinfo.
//
// # Unmount and cleanup
//
// [Unmount] unmounts a file system by ID and waits for its helper to exit.
// [Cleanup] repairs what crashes leave: directories whose helper is gone
// (killed, crashed) are removed after a lazy unmount of their mount point,
// which also clears a dead FUSE mount that answers ENOTCONN (or
// ECONNABORTED); mounts of type
// fuse.hostcompute whose connection is dead and whose directory is gone are
// lazily unmounted too. A caller killed after starting a helper leaks nothing
// either: the helper lives on with a valid record, which [List] shows and
// [Unmount] ends.
//
// # Caching
//
// Mounts are made with long entry and attribute timeouts and with
// ExplicitDataCacheControl, so the kernel keeps file pages cached across opens
// instead of invalidating them whenever attributes are fetched again; file
// systems should return fuse.FOPEN_KEEP_CACHE from Open for content that only
// changes through the mount. Requests are served concurrently (go-fuse's
// default), so many readers proceed in parallel as far as the file system's
// own locking allows.
//
// # Errors
//
// Failures are *Error values naming the operation, the ID and the path;
// errors.Is matches [ErrUnknownKind], [ErrNotFound] (and fs.ErrNotExist),
// [ErrBusy] and [ErrHelper] (the helper failed to start or mount; the
// message carries what it reported).
package fusefs
