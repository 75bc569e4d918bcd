// Command hcs is the command line interface of hostcompute: Host Compute Service
// storage and compute, native on Linux.
//
// The layer commands convert between OCI Windows layer tars and layer folders:
//
//	hcs layer import [--parent DIR]... [--no-sync] [-f FILE|-] LAYERDIR
//	hcs layer export [-f FILE|-] [--gzip|--zstd] LAYERDIR
//	hcs layer inspect [-o text|json] TAR|LAYERDIR|-
//	hcs layer rm [--force] LAYERDIR...
//
// Global flags: -o/--output text|json (the format of results on standard output;
// "table" is accepted for text), -q/--quiet (no progress bar, no text summary),
// --debug (log to standard error), --version.
//
// Tar paths are given with -f/--file on every command, "-" meaning standard input or
// output; import also accepts -i/--input. Input may be plain, gzip or zstd; the
// compression is recognised from its first bytes.
//
// # Output
//
// Results go to standard output, one line of text or one JSON document. Errors go to
// standard error as one "hcs: <message>" line per failure. When standard error is a
// terminal, import and export draw a progress line there, erased when they finish.
//
// # Exit codes
//
//	0    success
//	1    other failure (I/O, permissions, ...)
//	2    usage error: unknown command or flag, wrong number of arguments
//	3    invalid input: a malformed or unsafe tar, or a corrupt layer
//	4    the destination already exists
//	5    not found: a missing file or layer, or a folder that is not a layer
//	130  interrupted by SIGINT or SIGTERM
//
// After the first SIGINT or SIGTERM the command cleans up (an import removes its
// staging folder, an export its temporary file) and exits with 130; a second signal
// ends the process at once.
package main
