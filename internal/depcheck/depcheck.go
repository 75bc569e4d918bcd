// Package depcheck holds the tests that keep the layering of DESIGN.md
// checkable: format packages need little beyond the standard library; the
// seed APIs and the CLI import no host mechanism (they forward to the engine,
// package host); and only the one executor (internal/mount, with its loop
// driver internal/loop) calls mount(2), umount(2), the new mount API or loop
// ioctls — everything else plans mounts and has them applied.
package depcheck
