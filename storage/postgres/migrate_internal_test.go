package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
)

// TestKeyPackageTableMigration saves KeyPackages and a note on the schema
// before migration 3, migrates, and checks that the KeyPackages moved to
// their table (with their Ref and lifetime) and left no rows behind.
func TestKeyPackageTableMigration(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := applyMigrations(ctx, pool, migrations[:2]); err != nil {
		t.Fatal(err)
	}
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	sign := func(kind int, tags nostr.Tags, content string) *nostr.Event {
		ev := &nostr.Event{PubKey: pk, CreatedAt: nostr.Now() - 10, Kind: kind, Tags: tags, Content: content}
		if err := ev.Sign(sk); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	const ref = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	kp := storage.KeyPackage{Ref: ref, NotAfter: time.Now().Add(time.Hour)}
	slot := sign(30443, nostr.Tags{{"d", "s"}, {"i", "x"}}, "slot")
	legacy := sign(443, nil, "legacy")
	note := sign(1, nostr.Tags{{"d", "s"}}, "note")
	for _, ev := range []*nostr.Event{slot, legacy, note} {
		var k *storage.KeyPackage
		if ev.Kind != 1 {
			k = &storage.KeyPackage{Ref: ev.ID, NotAfter: kp.NotAfter} // distinct refs
		}
		if ev == slot {
			k = &kp
		}
		args, err := newSaveArgs(ev, k, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var status int
		if err := pool.QueryRow(ctx, "SELECT o_status FROM ("+saveSQL+") s", args.values()...).Scan(&status); err != nil || status != statusStored {
			t.Fatalf("pre-migration save of kind %d: status %d, %v", ev.Kind, status, err)
		}
	}

	s, err := Open(ctx, Config{URL: pg.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		sql  string
		want int
	}{
		{"SELECT count(*) FROM events WHERE kind IN (443, 30443)", 0},
		{"SELECT count(*) FROM event_tags WHERE kind IN (443, 30443)", 0},
		{"SELECT count(*) FROM keypackages WHERE expires_at IS NOT NULL AND kp_ref IS NOT NULL", 2},
		{"SELECT count(*) FROM events WHERE kind = 1", 1},
	} {
		var n int
		if err := pool.QueryRow(ctx, c.sql).Scan(&n); err != nil || n != c.want {
			t.Errorf("%s = %d (%v), want %d", c.sql, n, err, c.want)
		}
	}
	if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"d": {"s"}}}); err != nil || n != 2 {
		t.Errorf("#d after the migration: %d, %v; want 2", n, err)
	}
	// The Ref moved with the row: a twin of it joins it, and deleting the
	// twin deletes it.
	twin := sign(443, nil, "twin")
	res, err := s.SaveKeyPackage(ctx, twin, kp)
	if err != nil || len(res.Deleted) != 0 {
		t.Fatalf("twin save deleted %+v, %v; want nothing", res.Deleted, err)
	}
	dels, err := s.Delete(ctx, []string{twin.ID}, storage.ReasonAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if len(dels) != 2 || dels[1].ID != slot.ID || dels[1].Reason != storage.ReasonTwin {
		t.Errorf("deleting the twin deleted %+v, want %s as a twin", dels, slot.ID)
	}
}
