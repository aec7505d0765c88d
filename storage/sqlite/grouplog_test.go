package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestGroupLogReadsEventsStoredBeforeMigration4 opens a database as
// migration 3 left it, with group events stored, and checks that GroupLog
// finds them in order and numbering goes on.
func TestGroupLogReadsEventsStoredBeforeMigration4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burrow.db")
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.NewAuthor(t)
	var evs []*nostr.Event
	for range 3 {
		ev := storetest.GroupEvent(t, a, "g", nostr.Now()-60)
		if _, err := s.Save(ctx, ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	twoH := a.Event(t, 445, nostr.Now()-60, nostr.Tags{{"h", "g"}, {"h", "x"}}, "two h")
	if _, err := s.Save(ctx, twoH); err != nil {
		t.Fatal(err)
	}
	downgradeTo(t, s.writeDB, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Config{Path: path})
	var got []string
	for sq, err := range s.GroupLog(ctx, "g", 0, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, sq.Event.ID)
	}
	if len(got) != 3 || got[0] != evs[0].ID || got[1] != evs[1].ID || got[2] != evs[2].ID {
		t.Fatalf("GroupLog after the migration = %v, want the 3 group events in order", got)
	}
	if res, err := s.Save(ctx, storetest.GroupEvent(t, a, "g", nostr.Now())); err != nil || res.Seq != 4 {
		t.Fatalf("Save after the migration = %+v, %v; want seq 4", res, err)
	}
}

func TestDisableSequencing(t *testing.T) {
	ctx := context.Background()
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db"), DisableSequencing: true})
	a := storetest.NewAuthor(t)
	ev := storetest.GroupEvent(t, a, "g", nostr.Now()-10)
	if res, err := s.Save(ctx, ev); err != nil || res.Seq != 0 {
		t.Fatalf("Save = %+v, %v; want Seq 0", res, err)
	}
	if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"h": {"g"}}}); err != nil || n != 1 {
		t.Fatalf("Count(#h g) = %d, %v; want 1", n, err)
	}
	_, claimErr := s.ClaimSlot(ctx, storage.SlotClaim{H: "g", Slot: storetest.NewSlot(), Commit: storetest.GroupEvent(t, a, "g", nostr.Now())})
	_, lastErr := s.LastSeq(ctx, "g")
	var logErr error
	for _, err := range s.GroupLog(ctx, "g", 0, 0) {
		logErr = err
	}
	for name, err := range map[string]error{"ClaimSlot": claimErr, "LastSeq": lastErr, "GroupLog": logErr} {
		if !errors.Is(err, errSequencingDisabled) {
			t.Errorf("%s = %v, want errSequencingDisabled", name, err)
		}
	}
}

// TestGroupLogCursorOverInterleavedGroupsAndHoles checks the cursor search
// of GroupLog (seekGroup) at every position of a log whose groups are
// interleaved, which also holds other events with an h tag, and which has
// holes, including the newest row deleted before more events came.
func TestGroupLogCursorOverInterleavedGroupsAndHoles(t *testing.T) {
	ctx := context.Background()
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "burrow.db")})
	a := storetest.NewAuthor(t)
	type saved struct {
		seq int64
		id  string
	}
	logs := map[string][]saved{}
	save := func(h string) string {
		ev := storetest.GroupEvent(t, a, h, nostr.Now()-60)
		res, err := s.Save(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		logs[h] = append(logs[h], saved{res.Seq, ev.ID})
		return ev.ID
	}
	var doomed []string
	for i := range 60 {
		id := save([]string{"g1", "g2", "g3"}[i%3])
		if i%7 == 3 {
			doomed = append(doomed, id)
		}
		if i%10 == 0 {
			note := a.Event(t, 1, nostr.Now()-60, nostr.Tags{{"h", "g1"}}, fmt.Sprintf("note %d in g1", i))
			if _, err := s.Save(ctx, note); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 20 { // a run of one group's events on consecutive rows
		id := save("g3")
		if i%5 == 2 {
			doomed = append(doomed, id)
		}
	}
	// The newest row goes too, so the next events reuse its row number.
	doomed = append(doomed, save("g1"))
	if _, err := s.Delete(ctx, doomed, storage.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		save("g1")
		save("g2")
	}
	gone := map[string]bool{}
	for _, id := range doomed {
		gone[id] = true
	}
	for h, log := range logs {
		var stored []int64
		for _, e := range log {
			if !gone[e.id] {
				stored = append(stored, e.seq)
			}
		}
		for c := int64(0); c <= log[len(log)-1].seq+1; c++ {
			var got []int64
			for sq, err := range s.GroupLog(ctx, h, c, 0) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, sq.Seq)
			}
			var want []int64
			for _, q := range stored {
				if q > c {
					want = append(want, q)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s after %d: got %v, want %v", h, c, got, want)
			}
		}
	}
}
