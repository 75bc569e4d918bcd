// Package writeback starts the kernel writing a file's dirty pages to disk
// without waiting for it (sync_file_range with SYNC_FILE_RANGE_WRITE), for the
// format writers whose output is synced once at the end: the device then works
// while later data is produced, and the final sync finds little left. It is a
// hint; a failure, or a system without the call, only loses that head start.
package writeback

// MinSize is the file size from which the layer writers start a file's
// writeback as soon as its data is written: smaller files are left to the
// final sync, where they are written together.
const MinSize = 256 << 10
