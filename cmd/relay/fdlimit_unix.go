//go:build unix

package main

import "syscall"

// openFileLimit is the process's soft RLIMIT_NOFILE.
func openFileLimit() (limit uint64, known bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
