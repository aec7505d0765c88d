package bench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// TestJudgeRound proves the slot client catches every way a round can break
// the commit-slot rules: it is what turns a relay bug into a failed benchmark.
func TestJudgeRound(t *testing.T) {
	entries := []slotEntry{{id: "c0", innerID: "i0"}, {id: "c1", innerID: "i1"}, {id: "c2", innerID: "i2"}}
	won := func(msg string) answer { return answer{ok: true, reason: msg} }
	lost := func(holder string) answer { return answer{reason: blockedPrefix + holder} }
	tests := []struct {
		name        string
		bare        bool
		lastSeq     int64
		answers     []answer
		wantBlocked int
		wantViol    []string // substrings, one per expected violation
	}{
		{"one winner, losers name it", false, 0, []answer{lost("i1"), won("seq:1"), lost("i1")}, 2, nil},
		{"two winners", false, 0, []answer{won("seq:1"), won("seq:2"), lost("i0")}, 1, []string{"two winners"}},
		{"no winner", false, 0, []answer{lost("i1"), lost("i1"), lost("i1")}, 0, []string{"no winner", "loser", "loser", "loser"}},
		{"loser names another holder", false, 0, []answer{won("seq:1"), lost("i2"), lost("i0")}, 1, []string{"loser i1"}},
		{"loser refused otherwise", false, 0, []answer{won("seq:1"), {reason: "duplicate: x"}, lost("i0")}, 1, []string{"loser i1"}},
		{"winner without seq", false, 0, []answer{won(""), lost("i0"), lost("i0")}, 2, []string{"not seq:<n>"}},
		{"winner seq goes back", false, 5, []answer{won("seq:5"), lost("i0"), lost("i0")}, 2, []string{"seq 5 after seq 5"}},
		{"bare all accepted", true, 0, []answer{won(""), won("seq:3"), won("")}, 0, nil},
		{"bare refused", true, 0, []answer{won(""), {reason: "blocked: x"}, won("")}, 0, []string{"bare event c1 refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJudge(tt.bare, 1)
			j.lastSeq[0] = tt.lastSeq
			blocked, viol := j.round(entries, tt.answers)
			if blocked != tt.wantBlocked {
				t.Errorf("blocked = %d, want %d", blocked, tt.wantBlocked)
			}
			if len(viol) != len(tt.wantViol) {
				t.Fatalf("violations = %q, want %d like %q", viol, len(tt.wantViol), tt.wantViol)
			}
			for i, w := range tt.wantViol {
				if !strings.Contains(viol[i], w) {
					t.Errorf("violation %d = %q, want it to mention %q", i, viol[i], w)
				}
			}
		})
	}
}

// TestJudgeSeqAcrossRounds proves a winner's seq must grow from round to
// round within its group, and that groups are tracked apart.
func TestJudgeSeqAcrossRounds(t *testing.T) {
	j := newJudge(false, 2)
	round := func(group int, msg string) int {
		entries := []slotEntry{{id: "c", innerID: "i", group: group}}
		_, viol := j.round(entries, []answer{{ok: true, reason: msg}})
		return len(viol)
	}
	if n := round(0, "seq:1") + round(1, "seq:1") + round(0, "seq:2"); n != 0 {
		t.Fatalf("growing seqs: %d violations", n)
	}
	if n := round(1, "seq:1"); n != 1 {
		t.Fatalf("repeated seq in group 1: %d violations, want 1", n)
	}
}

// TestPrepareSlotsShape proves each round has one slot key shared by every
// claim, a distinct inner kind 445 per contender in the claim's group, and
// frames the relay can parse; bare rounds send the inner event itself.
func TestPrepareSlotsShape(t *testing.T) {
	for _, bare := range []bool{false, true} {
		cfg, err := SlotConfig{URL: "ws://x", Rounds: 3, Contenders: 4, Groups: 2, ContentBytes: 40, Bare: bare}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		rounds, err := prepareSlots(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(rounds) != 3 {
			t.Fatalf("rounds = %d", len(rounds))
		}
		inners := map[string]bool{}
		for r, entries := range rounds {
			if len(entries) != 4 {
				t.Fatalf("round %d: %d entries", r, len(entries))
			}
			slots := map[string]bool{}
			for _, e := range entries {
				var frame []json.RawMessage
				if err := json.Unmarshal(e.frame, &frame); err != nil || len(frame) != 2 || string(frame[0]) != `"EVENT"` {
					t.Fatalf("bad frame %s", e.frame)
				}
				var ev nostr.Event
				if err := json.Unmarshal(frame[1], &ev); err != nil {
					t.Fatal(err)
				}
				if ok, _ := ev.CheckSignature(); !ok || ev.ID != e.id || ev.GetID() != ev.ID {
					t.Fatalf("event %s does not verify", ev.ID)
				}
				inner := ev
				if !bare {
					if ev.Kind != 20445 {
						t.Fatalf("claim kind %d", ev.Kind)
					}
					slots[ev.PubKey] = true
					if err := json.Unmarshal([]byte(ev.Content), &inner); err != nil {
						t.Fatal(err)
					}
					if ev.Tags.GetFirst([]string{"h", ""}).Value() != inner.Tags.GetFirst([]string{"h", ""}).Value() || len(ev.Tags) != 1 {
						t.Fatalf("claim tags %v, inner tags %v", ev.Tags, inner.Tags)
					}
				}
				if inner.Kind != 445 || inner.ID != e.innerID || inners[inner.ID] {
					t.Fatalf("inner event %s kind %d repeated or mismatched", inner.ID, inner.Kind)
				}
				inners[inner.ID] = true
			}
			if !bare && len(slots) != 1 {
				t.Fatalf("round %d: %d slot keys, want 1", r, len(slots))
			}
		}
	}
}

// TestOverhead proves the cost compares the best run of each side.
func TestOverhead(t *testing.T) {
	rs := func(rates ...float64) []Result {
		out := make([]Result, len(rates))
		for i, r := range rates {
			out[i].EventsPerSec = r
		}
		return out
	}
	tests := []struct {
		name             string
		subject, control []Result
		want             float64
	}{
		{"best of each", rs(80, 90), rs(100, 50), 0.10},
		{"subject faster", rs(110), rs(100), -0.10},
		{"no runs", nil, rs(100), 0},
	}
	for _, tt := range tests {
		if got := Overhead(tt.subject, tt.control); got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("%s: Overhead = %v, want %v", tt.name, got, tt.want)
		}
	}
}
