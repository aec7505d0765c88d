package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/bench"
)

// TestBenchSlotsAgainstRelay runs a tiny slot race against the relay the
// benchmark starts: every round has exactly one winner and every loser is
// told who won. On an unsequenced store (config.disableSequencing, the
// benchmark's "switched off" side) bare 445s are accepted and claims win
// nothing, which proves the field reaches the store.
func TestBenchSlotsAgainstRelay(t *testing.T) {
	const rounds, contenders = 5, 4
	tests := []struct {
		name                     string
		sequenced, bare          bool
		wantWinners, wantBlocked int
		wantViolations           bool
	}{
		{"claims, sequenced", true, false, rounds, rounds * (contenders - 1), false},
		{"bare, unsequenced", false, true, rounds * contenders, 0, false},
		{"claims, unsequenced", false, false, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := benchStore{name: "sqlite"}
			res, err := runSlotTarget(context.Background(), st.target("t", "", tt.sequenced),
				bench.SlotConfig{Rounds: rounds, Contenders: contenders, Bare: tt.bare})
			if err != nil {
				t.Fatal(err)
			}
			if res.Winners != tt.wantWinners || res.Blocked != tt.wantBlocked || (res.Violations > 0) != tt.wantViolations {
				t.Fatalf("winners %d blocked %d violations %d %q; want %d, %d, violations %t",
					res.Winners, res.Blocked, res.Violations, res.ViolationSamples, tt.wantWinners, tt.wantBlocked, tt.wantViolations)
			}
		})
	}
}

// TestBenchSeparateProcesses runs the --separate machinery on a tiny load:
// Burrow as a child process of the built binary, every event accepted, and
// the relay's CPU read from its /proc entry (this process's own CPU is
// not counted: the child's is well above nothing, and the client's cost
// does not show up in it).
func TestBenchSeparateProcesses(t *testing.T) {
	if _, err := readStat(os.Getpid()); err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	bin := buildRelay(t)
	const events = 300
	row, err := runProcTarget(context.Background(), bench.Config{Events: events, Conns: 2},
		burrowProcTarget("burrow/sqlite", "", bin, ""))
	if err != nil {
		t.Fatal(err)
	}
	if row.res.Accepted != events || row.res.Failures != 0 {
		t.Fatalf("accepted %d, refused %d (%q); want all %d accepted", row.res.Accepted, row.res.Failures, row.res.FailureSamples, events)
	}
	// Verifying a signature alone costs tens of µs: a relay that spent
	// less than 10 µs an event was not the process measured.
	if us := row.perEvent(row.relayCPU); us < 10 || us > 1e6 {
		t.Fatalf("relay CPU %v for %d events (%.0f µs each)", row.relayCPU, events, us)
	}
	if row.res.ProcessCPU <= 0 {
		t.Fatalf("the client's CPU was not measured: %v", row.res.ProcessCPU)
	}
	// The relay's group commits, from its /metrics: every event was one
	// write (the start-up sweep of expired events may add one more).
	if c := row.commits; c.writes < events || c.writes > events+1 || c.count < 1 || c.count > c.writes || c.seconds <= 0 {
		t.Fatalf("commits scraped from the relay: %+v; want %d or %d writes in 1 to as many commits, taking some time", c, events, events+1)
	}
	var out bytes.Buffer
	if err := procTable(&out, []procRow{row}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"relay µs/ev", "client µs/ev", "writes/commit", "commit ms", "burrow/sqlite"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestProcCPUCountsThisProcess checks the /proc/<pid>/stat reading on this
// process: busy work shows up, in the right unit.
func TestProcCPUCountsThisProcess(t *testing.T) {
	before, err := procCPU(os.Getpid(), false)
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	start := time.Now()
	x := 0
	for time.Since(start) < 300*time.Millisecond {
		x++
	}
	after, err := procCPU(os.Getpid(), false)
	if err != nil {
		t.Fatal(err)
	}
	// 300 ms of one busy goroutine on a possibly shared machine: at least
	// some of it, at most what two cores could give with the test's other
	// goroutines.
	if d := after - before; d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("300 ms of busy work read as %v of CPU (%d loops)", d, x)
	}
}
