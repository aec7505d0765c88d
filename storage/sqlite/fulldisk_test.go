package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestFullDiskRefusesCleanlyAndRecovers (issue 14 item 10): on a full file
// system a Save fails with storage.ErrFull (the relay answers "error: the
// relay's storage is full"), leaves nothing of the event behind, and the
// database stays sound; once space is freed, Saves succeed again.
func TestFullDiskRefusesCleanlyAndRecovers(t *testing.T) {
	dir := testsvc.SmallFS(t, "8m")
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, Config{Path: filepath.Join(dir, "relay.db")})
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	big := strings.Repeat("x", 60<<10)
	var stored []string
	var refused []*nostr.Event
	// One base time: with nostr.Now() per event, the clock ticking between
	// two events would give them one created_at, hence one id.
	base := nostr.Now()
	for i := 0; len(refused) < 5; i++ {
		if i > 500 {
			t.Fatal("the file system never filled up")
		}
		tags := nostr.Tags{{"t", "fill"}, {"p", a.PubKey}}
		ev := a.Event(t, 1, base-nostr.Timestamp(i), tags, big)
		_, err := s.Save(ctx, ev)
		switch {
		case err == nil:
			if len(refused) > 0 {
				t.Fatalf("event %d stored after the disk filled", i)
			}
			stored = append(stored, ev.ID)
		case errors.Is(err, storage.ErrFull):
			refused = append(refused, ev)
		default:
			t.Fatalf("Save %d on a full disk: %v, want ErrFull", i, err)
		}
	}
	t.Logf("%d events stored before the disk filled", len(stored))
	check := func(what string) {
		t.Helper()
		for _, ev := range refused {
			if n, err := s.Count(ctx, nostr.Filter{IDs: []string{ev.ID}}); err != nil || n != 0 {
				t.Fatalf("%s: a refused event is stored (%d, %v)", what, n, err)
			}
		}
		var orphans int
		if err := s.readDB.QueryRow(`SELECT COUNT(*) FROM tags t WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.n = t.event)`).Scan(&orphans); err != nil || orphans != 0 {
			t.Fatalf("%s: %d tag rows without their event (%v)", what, orphans, err)
		}
		if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"t": {"fill"}}}); err != nil || n != int64(len(stored)) {
			t.Fatalf("%s: %d events by tag, want the %d stored (%v)", what, n, len(stored), err)
		}
		var ok string
		if err := s.readDB.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("%s: integrity_check = %q, %v", what, ok, err)
		}
	}
	check("disk full")

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	for _, ev := range refused {
		if _, err := s.Save(ctx, ev); err != nil {
			t.Fatalf("Save after space was freed: %v", err)
		}
		stored = append(stored, ev.ID)
	}
	refused = nil
	check("after space was freed")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, Config{Path: filepath.Join(dir, "relay.db")})
	if n, err := s2.Count(ctx, nostr.Filter{}); err != nil || n != int64(len(stored)) {
		t.Fatalf("after reopening: %d events, want %d (%v)", n, len(stored), err)
	}
}
