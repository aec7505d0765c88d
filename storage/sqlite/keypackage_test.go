package sqlite

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestKeyPackageRulesScheduleACheckpoint checks that the deletions added for
// KeyPackages (twins, eviction, NotAfter, vanish, ban) go through the same
// removal path as the others: a removed 443/30443 schedules the WAL scrub, a
// removed note does not.
func TestKeyPackageRulesScheduleACheckpoint(t *testing.T) {
	for _, tt := range []struct {
		name      string
		kind      int
		tags      nostr.Tags
		trigger   string // "twin", "evict", "notafter", "vanish", "ban"
		wantScrub bool
		wantWhy   storage.Reason
	}{
		{"443 twin", 443, nil, "twin", true, storage.ReasonTwin},
		{"30443 evicted", 30443, nostr.Tags{{"d", "old device"}}, "evict", true, storage.ReasonEvicted},
		{"443 past NotAfter", 443, nil, "notafter", true, storage.ReasonExpired},
		{"30443 by vanish", 30443, nostr.Tags{{"d", "device"}}, "vanish", true, storage.ReasonVanish},
		{"443 by ban", 443, nil, "ban", true, storage.ReasonBanned},
		{"note by vanish", 1, nil, "vanish", false, storage.ReasonVanish},
		{"note by ban", 1, nil, "ban", false, storage.ReasonBanned},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
			ctx := context.Background()
			a := storetest.NewAuthor(t)
			kp := storage.KeyPackage{Ref: strings.Repeat("ab", 32), NotAfter: time.Now().Add(time.Minute), SlotCap: 1, EvictAfter: time.Second}
			ev := a.Event(t, tt.kind, nostr.Now()-60, tt.tags, "content")
			var err error
			if tt.kind == 1 {
				_, err = s.Save(ctx, ev)
			} else {
				_, err = s.SaveKeyPackage(ctx, ev, kp)
			}
			if err != nil {
				t.Fatalf("save: %v", err)
			}
			if n := s.scrubsScheduled.Load(); n != 0 {
				t.Fatalf("%d checkpoints scheduled after a save that deleted nothing", n)
			}
			var deleted []storage.Deletion
			switch tt.trigger {
			case "twin":
				// Twins coexist; deleting one deletes the other.
				twin := a.Event(t, 30443, nostr.Now(), nostr.Tags{{"d", "x"}}, "twin")
				var res storage.Result
				if res, err = s.SaveKeyPackage(ctx, twin, kp); err != nil || len(res.Deleted) != 0 {
					t.Fatalf("saving a twin deleted %+v, %v", res.Deleted, err)
				}
				if deleted, err = s.Delete(ctx, []string{twin.ID}, storage.ReasonAdmin); err == nil {
					deleted = slices.DeleteFunc(deleted, func(d storage.Deletion) bool { return d.ID == twin.ID })
				}
			case "evict":
				other := kp
				other.Ref = strings.Repeat("cd", 32)
				var res storage.Result
				res, err = s.SaveKeyPackage(ctx, a.Event(t, 30443, nostr.Now(), nostr.Tags{{"d", "new device"}}, "new slot"), other)
				deleted = res.Deleted
			case "notafter":
				deleted, err = s.DeleteExpired(ctx, time.Now().Add(2*time.Minute))
			case "vanish":
				var res storage.Result
				res, err = s.Save(ctx, a.Event(t, 62, nostr.Now(), nostr.Tags{{"relay", "ALL_RELAYS"}}, ""))
				deleted = res.Deleted
			case "ban":
				deleted, err = s.Ban(ctx, a.PubKey)
			}
			if err != nil || len(deleted) != 1 || deleted[0].ID != ev.ID || deleted[0].Reason != tt.wantWhy {
				t.Fatalf("%s deleted %+v, %v; want %s (%s)", tt.trigger, deleted, err, ev.ID, tt.wantWhy)
			}
			if got := s.scrubsScheduled.Load() > 0; got != tt.wantScrub {
				t.Errorf("checkpoint scheduled = %v, want %v", got, tt.wantScrub)
			}
			var tombstoned bool
			if err := s.readDB.QueryRow(`SELECT EXISTS (SELECT 1 FROM tombstones WHERE id = ? AND reason = ?)`, ev.ID, string(tt.wantWhy)).Scan(&tombstoned); err != nil || !tombstoned {
				t.Errorf("tombstoned with reason %s = %v, %v; want true", tt.wantWhy, tombstoned, err)
			}
		})
	}
}

// TestKeyPackageRowColumns checks what SaveKeyPackage stores beside the
// event: the Ref, and the earlier of NotAfter and the NIP-40 expiration,
// rounded down to the second; plain Save stores neither.
func TestKeyPackageRowColumns(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	now := time.Now().Unix()
	// A Ref of its own per case: twins would share their earliest expiry.
	ref := func(b string) string { return strings.Repeat(b, 32) }
	for _, tt := range []struct {
		name       string
		tags       nostr.Tags
		kp         *storage.KeyPackage
		wantRef    string
		wantExpiry int64 // 0: none
	}{
		{"NotAfter first", nostr.Tags{{"expiration", "9999999999"}}, &storage.KeyPackage{Ref: ref("0f"), NotAfter: time.Unix(now+100, 900_000_000)}, ref("0f"), now + 100},
		{"expiration first", nostr.Tags{{"expiration", "1" + strings.Repeat("0", 10)}}, &storage.KeyPackage{Ref: ref("1f"), NotAfter: time.Unix(now+200, 0)}, ref("1f"), now + 200},
		{"no NotAfter", nil, &storage.KeyPackage{Ref: ref("2f")}, ref("2f"), 0},
		{"plain Save", nostr.Tags{{"expiration", "9999999999"}}, nil, "", 9999999999},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := a.Event(t, 443, nostr.Now()-60, tt.tags, tt.name)
			var err error
			if tt.kp == nil {
				_, err = s.Save(ctx, ev)
			} else {
				_, err = s.SaveKeyPackage(ctx, ev, *tt.kp)
			}
			if err != nil {
				t.Fatalf("save: %v", err)
			}
			var gotRef string
			var gotExpiry int64
			if err := s.readDB.QueryRow(`SELECT COALESCE(kp_ref, ''), COALESCE(expires_at, 0) FROM events WHERE id = ?`, ev.ID).
				Scan(&gotRef, &gotExpiry); err != nil {
				t.Fatal(err)
			}
			if gotRef != tt.wantRef || gotExpiry != tt.wantExpiry {
				t.Errorf("kp_ref, expires_at = %q, %d; want %q, %d", gotRef, gotExpiry, tt.wantRef, tt.wantExpiry)
			}
		})
	}
}

// TestSaveKeyPackageRejectsOtherKinds: the KeyPackage rules apply to 443 and
// 30443 only; anything else is a caller bug, not a refusal.
func TestSaveKeyPackageRejectsOtherKinds(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	a := storetest.NewAuthor(t)
	for _, kind := range []int{1, 444, 10443, 30444} {
		ev := a.Event(t, kind, nostr.Now()-60, nil, "not a KeyPackage")
		if _, err := s.SaveKeyPackage(context.Background(), ev, storage.KeyPackage{Ref: "ab"}); err == nil || isRefusal(err) {
			t.Errorf("SaveKeyPackage(kind %d) = %v, want a non-refusal error", kind, err)
		}
	}
	if n, err := s.Count(context.Background(), nostr.Filter{}); err != nil || n != 0 {
		t.Errorf("Count = %d, %v; want 0", n, err)
	}
}

// TestBanRejectsMalformedPubKeys: a ban that could never match an event is
// refused instead of recorded.
func TestBanRejectsMalformedPubKeys(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	ctx := context.Background()
	for _, pk := range []string{"", "abc", strings.Repeat("AB", 32), strings.Repeat("zz", 32), "npub1" + strings.Repeat("q", 58)} {
		if _, err := s.Ban(ctx, pk); err == nil {
			t.Errorf("Ban(%q) succeeded", pk)
		}
	}
	if got, err := s.BannedPubKeys(ctx); err != nil || len(got) != 0 {
		t.Errorf("BannedPubKeys = %v, %v; want none", got, err)
	}
}

// TestSaveChecksUseIndexes: the NIP-62 check every Save runs and the KeyPackage
// reads must be index lookups, not scans. (The slot read names its index;
// the plan shows that the index can serve it.)
func TestSaveChecksUseIndexes(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	pk := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name, query string
		args        []any
		wantIndex   string
	}{
		{"vanish check", `SELECT 1 FROM events v WHERE v.kind = 62 AND v.pubkey = ? AND v.created_at >= ?`, []any{pk, 0}, "events_vanish"},
		{"the author's KeyPackages", `SELECT n FROM events INDEXED BY events_kp_author WHERE kind IN (443, 30443) AND pubkey = ?1 AND (expires_at IS NULL OR expires_at > ?2)`, []any{pk, 0}, "events_kp_author"},
		{"twins", `SELECT n FROM events WHERE pubkey = ?1 AND kp_ref = ?2 AND kind IN (443, 30443)`, []any{pk, pk}, "events_kp_ref"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.readDB.Query(`EXPLAIN QUERY PLAN `+tt.query, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(plan, "\n"), "INDEX "+tt.wantIndex+" ") {
				t.Errorf("plan %q does not use %s", plan, tt.wantIndex)
			}
		})
	}
}

// TestKeyPackageMigration opens a database as migration 2 left it, with an
// event stored, and checks that reopening adds the KeyPackage columns and
// tables without touching the event.
func TestKeyPackageMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burrow.db")
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.NewAuthor(t)
	old := a.Event(t, 443, nostr.Now()-60, nil, "stored before the migration")
	if _, err := s.Save(ctx, old); err != nil {
		t.Fatalf("Save: %v", err)
	}
	downgradeTo(t, s.writeDB, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Config{Path: path})
	var version int
	newest := migrations()[len(migrations())-1].version
	if err := s.readDB.QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&version); err != nil || version != newest {
		t.Fatalf("schema version = %d, %v; want %d", version, err, newest)
	}
	if n, err := s.Count(ctx, nostr.Filter{IDs: []string{old.ID}}); err != nil || n != 1 {
		t.Fatalf("Count(the old event) = %d, %v; want 1", n, err)
	}
	// The old event has no Ref, so it is nobody's twin; the new rules work.
	res, err := s.SaveKeyPackage(ctx, a.Event(t, 443, nostr.Now()-30, nil, "after"), storage.KeyPackage{Ref: strings.Repeat("ab", 32)})
	if err != nil || len(res.Deleted) != 0 {
		t.Fatalf("SaveKeyPackage after the migration = %+v, %v; want nothing deleted", res.Deleted, err)
	}
	if _, err := s.Ban(ctx, a.PubKey); err != nil {
		t.Fatalf("Ban after the migration: %v", err)
	}
}
