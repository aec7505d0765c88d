package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestGroupMigrationFillsH opens a database as migration 3 left it, with
// group events stored, and checks that migration 4 files them under their
// group so GroupLog finds them and numbering goes on.
func TestGroupMigrationFillsH(t *testing.T) {
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
	if _, err := s.writeDB.Exec(`DROP INDEX events_group_seq; ALTER TABLE events DROP COLUMN h;
DROP TABLE commit_slots; DROP TABLE commit_slot_losers; DROP TABLE released_commits;
DELETE FROM schema_migrations WHERE version = 4`); err != nil {
		t.Fatalf("restore the version 3 schema: %v", err)
	}
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
