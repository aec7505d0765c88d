package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestKeyPackageContentMigration stores KeyPackages (and a note) with the
// schema before migration 6, deletes one, migrates, and checks that every
// KeyPackage is still there with its content, tags, signature, ref and slot,
// that queries of each kind read them, that saves and deletions go on
// working on the new layout, and that the old table's files, which held
// the deleted one's content, are gone.
func TestKeyPackageContentMigration(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var before []migration
	for _, m := range migrations {
		if m.version < 6 {
			before = append(before, m)
		}
	}
	if err := applyMigrations(ctx, pool, before); err != nil {
		t.Fatal(err)
	}
	save := func(ev *nostr.Event, kp *storage.KeyPackage) {
		t.Helper()
		args, err := newSaveArgs(ev, kp, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var status int
		if err := pool.QueryRow(ctx, "SELECT o_status FROM ("+saveSQL+") s", args.values()...).Scan(&status); err != nil || status != statusStored {
			t.Fatalf("pre-migration save of kind %d: status %d, %v", ev.Kind, status, err)
		}
	}
	base := nostr.Now() - 100
	authors := []storetest.Author{storetest.NewAuthor(t), storetest.NewAuthor(t), storetest.NewAuthor(t)}
	var kps []*nostr.Event
	refs := map[string]string{} // event id -> ref
	for i := range 12 {
		a := authors[i%len(authors)]
		var ev *nostr.Event
		if i%2 == 0 {
			ev = a.Event(t, 30443, base+nostr.Timestamp(i), nostr.Tags{{"d", fmt.Sprintf("slot-%d", i)}, {"encoding", "base64"}},
				fmt.Sprintf("KP-CONTENT-%d-%064x", i, i))
		} else {
			ev = a.Event(t, 443, base+nostr.Timestamp(i), nostr.Tags{{"encoding", "base64"}}, fmt.Sprintf("KP-CONTENT-%d-%064x", i, i))
		}
		ref := fmt.Sprintf("%064x", 1000+i)
		save(ev, &storage.KeyPackage{Ref: ref, NotAfter: time.Now().Add(time.Hour)})
		kps = append(kps, ev)
		refs[ev.ID] = ref
	}
	note := authors[0].Event(t, 1, base, nostr.Tags{{"d", "slot-0"}}, "a note")
	save(note, nil)
	gone := kps[len(kps)-1]
	kps = kps[:len(kps)-1]
	for _, a := range authors {
		if a.PubKey == gone.PubKey {
			save(a.Event(t, 5, base+50, nostr.Tags{{"e", gone.ID}}, ""), nil)
		}
	}
	var oldPath string
	if err := pool.QueryRow(ctx, "SELECT pg_relation_filepath('keypackages')").Scan(&oldPath); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, Config{URL: pg.URL, KeyPackageRewriteWithin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	for _, c := range []struct {
		sql  string
		want int
	}{
		{"SELECT count(*) FROM keypackages", len(kps)},
		{"SELECT count(*) FROM keypackages WHERE content <> ''", 0},
		{"SELECT count(*) FROM keypackages WHERE kp_ref IS NOT NULL AND (kind = 30443) = (slot_d IS NOT NULL)", len(kps)},
		{"SELECT count(*) FROM keypackage_content", len(kps)},
		{"SELECT count(*) FROM keypackages k JOIN keypackage_content c ON c.id = k.id AND c.part = k.part AND k.part = burrow_kp_part(k.pubkey)", len(kps)},
		{"SELECT count(*) FROM events WHERE kind = 1", 1},
	} {
		var n int
		if err := pool.QueryRow(ctx, c.sql).Scan(&n); err != nil || n != c.want {
			t.Errorf("%s = %d (%v), want %d", c.sql, n, err, c.want)
		}
	}
	for _, ev := range kps {
		var ref []byte
		if err := pool.QueryRow(ctx, "SELECT kp_ref FROM keypackages WHERE id = decode($1, 'hex')", ev.ID).Scan(&ref); err != nil || hex.EncodeToString(ref) != refs[ev.ID] {
			t.Errorf("ref of %s after the migration: %x (%v), want %s", ev.ID, ref, err, refs[ev.ID])
		}
	}

	byID := map[string]*nostr.Event{}
	for _, ev := range kps {
		byID[ev.ID] = ev
	}
	query := func(f nostr.Filter) []string {
		t.Helper()
		var ids []string
		for ev, err := range s.Query(ctx, f) {
			if err != nil {
				t.Fatalf("Query %v: %v", f, err)
			}
			if want, ok := byID[ev.ID]; ok && (ev.Content != want.Content || ev.Sig != want.Sig || !slices.EqualFunc(ev.Tags, want.Tags, slices.Equal)) {
				t.Errorf("Query %v returns %s with content %q, tags %v; want %q, %v", f, ev.ID, ev.Content, ev.Tags, want.Content, want.Tags)
			}
			ids = append(ids, ev.ID)
		}
		slices.Sort(ids)
		return ids
	}
	ids := func(evs ...*nostr.Event) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev.ID)
		}
		slices.Sort(out)
		return out
	}
	var ofA0, kinds30443 []*nostr.Event
	for _, ev := range kps {
		if ev.PubKey == authors[0].PubKey {
			ofA0 = append(ofA0, ev)
		}
		if ev.Kind == 30443 {
			kinds30443 = append(kinds30443, ev)
		}
	}
	for _, c := range []struct {
		name string
		f    nostr.Filter
		want []string
	}{
		{"by author", nostr.Filter{Authors: []string{authors[0].PubKey}, Kinds: []int{443, 30443}}, ids(ofA0...)},
		{"by ids", nostr.Filter{IDs: []string{kps[1].ID, kps[4].ID, gone.ID}}, ids(kps[1], kps[4])},
		{"kind only", nostr.Filter{Kinds: []int{30443}}, ids(kinds30443...)},
		{"#d on both tables", nostr.Filter{Tags: nostr.TagMap{"d": {"slot-0"}}}, ids(kps[0], note)},
	} {
		if got := query(c.f); !slices.Equal(got, c.want) {
			t.Errorf("%s: Query ids %v, want %v", c.name, got, c.want)
		}
	}
	if n, err := s.Count(ctx, nostr.Filter{Kinds: []int{443, 30443}}); err != nil || n != int64(len(kps)) {
		t.Errorf("Count of KeyPackages: %d (%v), want %d", n, err, len(kps))
	}

	// The old table, with the deleted KeyPackage's content, is gone from
	// the disk once a checkpoint has run.
	if pg.DataDir != "" {
		if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(pg.DataDir, oldPath)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the pre-migration keypackages file %s is still there (%v)", oldPath, err)
		}
	}

	// Saves and deletions go on: a new version of a migrated slot replaces
	// it, whose content row goes and whose partition owes a rewrite.
	old := kps[0]
	newer := authors[0].Event(t, 30443, base+60, nostr.Tags{{"d", "slot-0"}}, "KP-CONTENT-NEWER")
	res, err := s.SaveKeyPackage(ctx, newer, storage.KeyPackage{Ref: fmt.Sprintf("%064x", 9999), NotAfter: time.Now().Add(time.Hour)})
	if err != nil || len(res.Deleted) != 1 || res.Deleted[0].ID != old.ID {
		t.Fatalf("replacing a migrated slot: deleted %+v, %v; want %s", res.Deleted, err, old.ID)
	}
	var content, debts int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM keypackage_content WHERE id = decode($1, 'hex')),
		(SELECT count(*) FROM keypackage_scrub WHERE part = burrow_kp_part(decode($2, 'hex')))`, old.ID, old.PubKey).Scan(&content, &debts); err != nil {
		t.Fatal(err)
	}
	if content != 0 || debts != 1 {
		t.Errorf("after the replacement: %d content rows of the old version, %d debts of its partition; want 0 and 1", content, debts)
	}
	if got := query(nostr.Filter{Authors: []string{authors[0].PubKey}, Kinds: []int{30443}, Tags: nostr.TagMap{"d": {"slot-0"}}}); !slices.Equal(got, ids(newer)) {
		t.Errorf("slot-0 after the replacement: %v, want %v", got, ids(newer))
	}
}
