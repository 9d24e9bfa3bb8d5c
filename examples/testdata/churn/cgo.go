//go:build cgo && churncgo

package main

// With one cgo file the external linker lays C start-up code before Go's,
// the build mode whose stripped binaries once had their uprobes placed
// 256 bytes early. Calling C keeps the file from being dead code.

// static int churn_one(void) { return 1; }
import "C"

func init() { _ = C.churn_one() }
