package main

import (
	"context"
	"testing"

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
