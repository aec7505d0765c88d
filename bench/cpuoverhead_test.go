package bench

import (
	"math"
	"runtime"
	"testing"
	"time"
)

// TestCPUOverhead checks the CPU form of the sequencing cost: least CPU per event of each side,
// runs without a CPU figure left out.
func TestCPUOverhead(t *testing.T) {
	run := func(accepted int, cpu time.Duration) Result { return Result{Accepted: accepted, ProcessCPU: cpu} }
	subject := []Result{run(1000, 300*time.Millisecond), run(1000, 240*time.Millisecond), run(0, time.Second)}
	control := []Result{run(1000, 200*time.Millisecond), run(2000, 500*time.Millisecond), run(1000, 0)}
	if got := CPUOverhead(subject, control); math.Abs(got-0.2) > 1e-9 {
		t.Errorf("CPUOverhead = %v, want 0.2 (240 µs against 200 µs per event)", got)
	}
	if got := CPUOverhead(subject, []Result{run(1000, 0)}); got != 0 {
		t.Errorf("CPUOverhead without control CPU = %v, want 0", got)
	}
	if got := run(1000, 250*time.Millisecond).CPUPerEvent(); got != 250*time.Microsecond {
		t.Errorf("CPUPerEvent = %s, want 250µs", got)
	}
	if runtime.GOOS == "linux" && processCPU() <= 0 {
		t.Error("processCPU is 0 on a unix system")
	}
}
