//go:build !unix

package main

// openFileLimit: no RLIMIT_NOFILE here.
func openFileLimit() (limit uint64, known bool) { return 0, false }
