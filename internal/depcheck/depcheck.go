// Package depcheck holds a test that keeps the dependency direction of DESIGN.md
// checkable: format packages need little beyond the standard library, and nothing below
// the CLI imports the CLI's libraries.
package depcheck
