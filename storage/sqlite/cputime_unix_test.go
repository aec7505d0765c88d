//go:build unix

package sqlite

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used, so a
// benchmark can report cost per event independently of other load on the
// machine.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
