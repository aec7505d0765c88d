package sqlite

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// bigAuthor fills s with n kind 1 events of a, each with a "t" and a "p"
// tag, wraps gift wraps (kind 1059) from someone else addressed to a, and
// 20 KeyPackages of a, each with a twin. The plain events and wraps go in
// by SQL (saving 100,000 events one by one would take most of a minute
// under -race); the KeyPackages through SaveKeyPackage. It returns the
// KeyPackage events.
func bigAuthor(t testing.TB, s *Store, a storetest.Author, n, wraps int, at nostr.Timestamp) []*nostr.Event {
	t.Helper()
	other := strings.Repeat("0f", 32)
	tx, err := s.writeDB.Begin()
	if err != nil {
		t.Fatal(err)
	}
	fills := []struct {
		sql  string
		args []any
	}{
		{`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1)
INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig)
SELECT printf('%s%056x', 'aaaaaaaa', i), ?2, ?3 - i % 1000, 1, '[["t","x"],["p","' || ?4 || '"]]', 'content ' || i, printf('%0128x', i) FROM c`,
			[]any{n, a.PubKey, int64(at), other}},
		{`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1)
INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig)
SELECT printf('%s%056x', 'bbbbbbbb', i), ?4, ?3 - i % 1000, 1059, '[["p","' || ?2 || '"]]', 'sealed ' || i, printf('%0128x', i) FROM c`,
			[]any{wraps, a.PubKey, int64(at), other}},
		{`INSERT INTO tags (name, value, event) SELECT 't', 'x', n FROM events WHERE pubkey = ?1`, []any{a.PubKey}},
		{`INSERT INTO tags (name, value, event) SELECT 'p', ?2, n FROM events WHERE pubkey = ?1`, []any{a.PubKey, other}},
		{`INSERT INTO tags (name, value, event) SELECT 'p', ?1, n FROM events WHERE kind = 1059`, []any{a.PubKey}},
	}
	if wraps == 0 {
		fills = append(fills[:1], fills[2:]...)
	}
	for _, q := range fills {
		if _, err := tx.Exec(q.sql, q.args...); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var kps []*nostr.Event
	for i := range 20 {
		ref := strings.Repeat("0", 62) + string(rune('a'+i/16)) + string("0123456789abcdef"[i%16])
		kp := storage.KeyPackage{Ref: ref, NotAfter: time.Now().Add(time.Hour)}
		for _, ev := range []*nostr.Event{
			a.Event(t, 443, at-nostr.Timestamp(i), nostr.Tags{{"i", ref}}, "kp "+ref),
			a.Event(t, 30443, at-nostr.Timestamp(i), nostr.Tags{{"d", ref}, {"i", ref}}, "kp "+ref),
		} {
			if _, err := s.SaveKeyPackage(context.Background(), ev, kp); err != nil {
				t.Fatal(err)
			}
			kps = append(kps, ev)
		}
	}
	return kps
}

// holdWatch records how long each batch the writer commits worked and
// held the writer.
type holdWatch struct {
	mu           sync.Mutex
	works, holds []time.Duration
}

func watchHolds(s *Store) *holdWatch {
	w := &holdWatch{}
	s.batchHook = func(work, hold time.Duration) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.works = append(w.works, work)
		w.holds = append(w.holds, hold)
	}
	return w
}

// end checks the batches of a removal: it took many, and a typical batch's
// work (before its commit) stays under 100 ms; the removal being chunked,
// a batch works about chunkWork. The tail is logged: on the shared 2-core
// machine the tests run on, other processes' load can stall the writer
// goroutine now and then. Whole
// holds, commits included, are logged too: a commit's time is mostly the
// disk's (its fsync, and SQLite's WAL checkpoint every 4,000 pages, which
// runs on the writer's commit whatever the writes are).
func (w *holdWatch) end(t *testing.T, what string, took time.Duration) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	works, holds := slices.Clone(w.works), slices.Clone(w.holds)
	if len(holds) < 20 {
		t.Fatalf("%s in %d batches: the removal was not split into chunks", what, len(holds))
	}
	slices.Sort(works)
	slices.Sort(holds)
	pct := func(d []time.Duration, p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }
	t.Logf("%s: %v in %d batches; work per batch median %v, p99 %v, max %v; hold median %v, p90 %v, p99 %v, max %v",
		what, took.Round(time.Millisecond), len(holds), pct(works, 0.5), pct(works, 0.99), works[len(works)-1],
		pct(holds, 0.5), pct(holds, 0.9), pct(holds, 0.99), holds[len(holds)-1])
	// The median, not the tail: a chunk stops after chunkWork of work, so
	// a typical batch shows the design, while the tail shows the machine
	// (other processes stalling the writer goroutine now and then). The
	// tail is measured in the benchmarks (docs/benchmarks.md).
	if p := pct(works, 0.5); p > 100*time.Millisecond {
		t.Errorf("the median batch worked %v before its commit, more than 100 ms", p)
	}
}

// TestBanOfABigAuthorIsChunked: banning an author with 100,000 events
// (bigAuthorEvents) removes all of them (and their KeyPackages' twins), in
// write ops whose work stays under 100 ms.
func TestBanOfABigAuthorIsChunked(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db"), Synchronous: "NORMAL"})
	a := storetest.NewAuthor(t)
	const n = bigAuthorEvents
	kps := bigAuthor(t, s, a, n, 0, nostr.Now()-10)
	w := watchHolds(s)
	start := time.Now()
	dels, err := s.Ban(context.Background(), a.PubKey)
	w.end(t, "Ban", time.Since(start))
	if err != nil {
		t.Fatalf("Ban: %v", err)
	}
	checkGone(t, s, a, dels, n+len(kps), storage.ReasonBanned)
	if _, err := s.Save(context.Background(), a.Event(t, 1, nostr.Now(), nil, "after")); err == nil {
		t.Fatal("a banned author's event was stored")
	}
}

// TestVanishOfABigAuthorIsChunked: a request to vanish from an author
// with 100,000 events (bigAuthorEvents) and 1,000 gift wraps addressed to
// it removes all of them, in write ops whose work stays under 100 ms.
func TestVanishOfABigAuthorIsChunked(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db"), Synchronous: "NORMAL"})
	a := storetest.NewAuthor(t)
	const n, wraps = bigAuthorEvents, 1000
	kps := bigAuthor(t, s, a, n, wraps, nostr.Now()-10)
	w := watchHolds(s)
	req := a.Event(t, 62, nostr.Now(), nostr.Tags{{"relay", "ALL_RELAYS"}}, "")
	start := time.Now()
	res, err := s.Save(context.Background(), req)
	w.end(t, "vanish", time.Since(start))
	if err != nil {
		t.Fatalf("Save(kind 62): %v", err)
	}
	checkGone(t, s, a, res.Deleted, n+wraps+len(kps), storage.ReasonVanish)
}

// checkGone asserts that dels reports want deletions, every one with
// reason except KeyPackage twins, and that nothing of a is served or left
// in the tag rows.
func checkGone(t *testing.T, s *Store, a storetest.Author, dels []storage.Deletion, want int, reason storage.Reason) {
	t.Helper()
	seen := make(map[string]bool, len(dels))
	for _, d := range dels {
		if seen[d.ID] {
			t.Fatalf("%s reported twice", d.ID)
		}
		seen[d.ID] = true
		if d.Reason != reason && d.Reason != storage.ReasonTwin {
			t.Fatalf("deletion %+v, want reason %s", d, reason)
		}
	}
	if len(dels) != want {
		t.Errorf("%d deletions reported, want %d", len(dels), want)
	}
	ctx := context.Background()
	// The request to vanish itself stays (NIP-62), as does nothing else.
	for _, f := range []nostr.Filter{{Authors: []string{a.PubKey}, Kinds: []int{1, 443, 30443, 1059}}, {Tags: nostr.TagMap{"p": {a.PubKey}}}} {
		if c, err := s.Count(ctx, f); err != nil || c != 0 {
			t.Errorf("Count(%v) = %d, %v after the removal; want 0", f, c, err)
		}
	}
	var rows, tombs int
	if err := s.readDB.QueryRow(`SELECT COUNT(*) FROM tags t JOIN events e ON e.n = t.event WHERE e.pubkey = ?`, a.PubKey).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("%d tag rows of the author left (%v)", rows, err)
	}
	if err := s.readDB.QueryRow(`SELECT COUNT(*) FROM tombstones`).Scan(&tombs); err != nil || tombs < want {
		t.Errorf("%d tombstones (%v), want at least %d", tombs, err, want)
	}
}
