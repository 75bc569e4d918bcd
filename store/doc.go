// Package store keeps container layers by key under one home directory, with
// containerd's snapshotter contract (Prepare, View, Commit, Remove, Walk, Stat,
// Update, Usage, Mounts, Close) plus Import and Export of layer tars. It is the
// engine that owns layers: what exists, in which state, and where its files are.
// containerd's snapshot conformance suite is its contract test.
//
// # The life of a layer
//
// Every layer has a key, unique in the store across all kinds, and at most one
// parent, which is always a committed layer. It is in exactly one of these
// states, and moves between them only as drawn:
//
//	                  Import(key, parent, tar)
//	(nothing) ─────────────────────────────────────────┐
//	    │  │                                           ▼
//	    │  └─ Prepare(key, parent) ──► ACTIVE ── Commit(name, key) ──► COMMITTED
//	    │                                │   (key stops existing;          │
//	    └── View(key, parent) ──► VIEW   │    name exists instead)         │
//	                               │     │                                 │
//	                  Remove(key) ─┴─────┴──────── Remove(name) ───────────┴──► (nothing)
//
// The states:
//
//   - Staged (invisible). Import and the commit of a Windows layer first write
//     the layer under staging/<random>, a directory their process holds an
//     exclusive flock on. Nothing else can see it: no record names it. When it
//     is complete and synced, one transaction moves it to layers/<id> and
//     writes its record. A process that dies before leaves only the staging
//     directory (and possibly the overlay it applied through, recorded in
//     v1/mounts), which the next Open removes because no live process holds it.
//   - Active (KindActive), made by Prepare: a writable layer over its parent.
//     Mounts gives the overlay (or, without a parent, the bind mount) that
//     shows the parent's content with the layer's directory as upper: what the
//     caller writes there is the layer's content. Usage measures it, Export
//     writes it as a diff tar. An active layer is never a parent.
//   - View (KindView), made by View: a read-only view of its parent (a bind
//     mount of one lower directory, a read-only overlay of several). It has no
//     content of its own; it cannot be committed, only removed.
//   - Committed (KindCommitted), made by Commit or Import: immutable content
//     that other layers can have as parent. Its usage and, where known, its
//     diff ID and chain ID are recorded. Commit of a directory layer keeps the
//     active layer's directory (the upper becomes the content); Commit of a
//     Windows layer turns the upper into a layer folder (staged, as above).
//   - Removed. Remove deletes the record first, then moves the directory to
//     trash/ while still holding the lock, then deletes it: a crash in between
//     leaves an unreferenced directory, never a record without its files. A
//     layer with children cannot be removed; neither can one being exported.
//
// Labels are the only property that changes (Update); Created is set when a
// layer enters a state and Updated whenever labels change.
//
// Mounts are returned as data (Mount, the shape of containerd's mount.Mount)
// and performed by the caller: the store does not mount a Prepare or View for
// anyone. The only mounts it makes itself are those of its own work (the union
// through which Import applies a Linux layer over its parents), each recorded
// in v1/mounts before it is made, with the PID and start time of its process.
//
// # Formats
//
// FormatLinuxDir layers are directories in overlayfs's upper form; Import
// applies OCI Linux layers with pkg/ocilayer and Export writes them with
// ocilayer.Diff. FormatWindowsFolder layers are Windows layer folders
// (pkg/winlayer) imported and exported with pkg/ociwclayer; their unions are
// overlays of the parents' Files/ folders, tombstones becoming whiteouts.
// FormatExt4VHD layers are ext4 images with a VHD footer (fs/layer.vhd), built
// by pkg/ext4 on Import and exported by attaching and mounting the image
// read-only through the host engine (recorded in v1/mounts as "disk:<image>"
// first, so a killed export's attachment is released by reconcile); unions of
// them, and the CIM and scratch-disk formats, need the parents' disks attached
// for as long as a view lives and are refused with ErrUnsupported.
//
// # Files
//
//	<root>/store.lock    flock: exclusive for writers, shared for readers
//	<root>/meta.db       bbolt: v1/layers, v1/ids, v1/children, v1/chains, v1/mounts
//	<root>/volatile-<boot ID>.db  bbolt, unsynced: records of Prepare and View not yet in meta.db
//	<root>/layers/<id>/  fs/ (content or upper), work/, upper/, whiteouts/
//	<root>/staging/      work in progress, flock-held by its writer
//	<root>/trash/        removed layers being deleted
//
// v1/ids and v1/children index the records by ID and by parent; v1/chains
// keeps each committed layer's line of parent IDs, so that Prepare and View
// read one entry instead of one record per parent (see chains.go). All three
// are rebuilt from the records by Repair.
//
// # Concurrency
//
// Any number of goroutines and processes may use one store. An operation holds
// the flock on store.lock (exclusive to change anything, shared to read) and
// opens meta.db under it for one bbolt transaction, so that no process keeps
// others out between calls. Long work — applying a tar, exporting, measuring
// usage — runs outside the lock, on staging directories or with a shared flock
// on the layer's directory, and is checked again when the result is committed.
// Walk calls its function with no lock held.
//
// # Crashes
//
// The records are the truth: a directory no record names is garbage, and every
// change is ordered so that a crash leaves at most garbage. Open reconciles:
// under the exclusive lock it unmounts and forgets mounts recorded by processes
// that are gone, removes staging and trash directories no live process holds,
// deletes the volatile file of an earlier boot (see Durability), and removes
// layer directories no record names. Check reports what differs
// between the records and the files (a missing layer directory, a stale mount
// record, a parent without a record, a record that does not decode); Repair
// mends it by dropping what cannot be used.
//
// # Durability
//
// Commit, Remove, Import, Update, Repair and GC return only once their records
// are on disk (bbolt's two fdatasyncs) and the directories they name are synced
// before them. Prepare and View do not wait for the disk: a mount does not
// survive a reboot, and what a crash leaves of a layer that was never durable
// is an orphan directory, which Open removes. Their records go to
// volatile-<boot ID>.db, committed without fdatasync, where every process sees
// them at once and the crash of any process (SIGKILL included) loses nothing,
// since the page cache holds them. The next synced transaction of any process
// — Commit, Remove, Import, Update, Repair, GC, Open, or Close when records are
// pending — first moves every pending record into meta.db, syncing the layers'
// directories before its commit: from then on those layers are as durable as
// the rest. What the machine loses (power, an OS crash, also a clean reboot
// before any of those calls) is only Prepares and Views made since the last
// synced transaction: the first Open of the next boot deletes the volatile file
// of the earlier boot unread (bbolt without fdatasync orders nothing on disk,
// so it is not trusted) and removes the directories it named, as if those
// Prepare and View calls had never returned — together with what was written
// into such an active layer meanwhile. A caller that needs an active layer to
// outlive the machine calls Close (or any synced operation) after Prepare.
//
// # Errors
//
// Failures are *Error values naming the operation and the key; their class is
// tested with errors.Is against ErrNotFound, ErrAlreadyExists,
// ErrFailedPrecondition, ErrInvalidArgument, ErrUnsupported, ErrClosed,
// ErrLocked and ErrCorrupt.
package store
