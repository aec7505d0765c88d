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
	user, sys := processCPUSplit()
	return user + sys
}

// processCPUSplit is processCPU split into user and system time. User time
// is the steadier measure of code changes: system time also carries the
// kernel's write and fsync work, which varies with the machine's load.
func processCPUSplit() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
