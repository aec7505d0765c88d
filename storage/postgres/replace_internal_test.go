package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestKeyPackageDeletionsOnANewRelayRunOnIndexes: the plans a relay keeps
// for its KeyPackage writes are made while its tables are small (new
// relay) and then serve every call. Slot replacements, twin burials (by a
// replacement and by a ban) and the writes around them must all find
// their rows by an index condition even then: before migration 9 the twin
// deletion's generic plan read every KeyPackage with a ref, on every
// deletion, the table's dead rows included. Checked as
// TestEveryStatementRunsOnAnIndex does, without filling the tables first.
func TestKeyPackageDeletionsOnANewRelayRunOnIndexes(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	requireAutoExplain(t, pg.URL)
	w := &planWatcher{}
	s, err := Open(ctx, Config{URL: pg.URL, Writers: 1, poolHook: w.hook})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w.take()

	kp := func() storage.KeyPackage {
		ref := make([]byte, 32)
		_, _ = rand.Read(ref)
		return storage.KeyPackage{Ref: hex.EncodeToString(ref), NotAfter: time.Now().Add(time.Hour), SlotCap: 10, EvictAfter: time.Hour}
	}
	save := func(ev *nostr.Event, k storage.KeyPackage) storage.Result {
		t.Helper()
		res, err := s.SaveKeyPackage(ctx, ev, k)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	const d = "0000000000000000000000000000000000000000000000000000000000000000"
	base := nostr.Now() - 100
	authors := []storetest.Author{storetest.NewAuthor(t), storetest.NewAuthor(t), storetest.NewAuthor(t)}
	// More calls than the plan cache's five custom plans, on every path.
	for i := range 8 {
		for _, a := range authors {
			// A twin pair: the 30443 and a 443 with the same KeyPackage.
			twin := kp()
			res := save(a.Event(t, 30443, base+nostr.Timestamp(2*i), nostr.Tags{{"d", d}}, "kp"), twin)
			if i > 0 && len(res.Deleted) != 2 {
				t.Fatalf("replacement %d deleted %v, want the old version and its twin", i, res.Deleted)
			}
			save(a.Event(t, 443, base+nostr.Timestamp(2*i), nil, "kp"), twin)
		}
	}
	dels, err := s.Ban(ctx, authors[0].PubKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(dels) != 2 {
		t.Fatalf("ban deleted %v, want a KeyPackage and its twin", dels)
	}

	plans := w.take()
	checked := 0
	for _, p := range plans {
		q := strings.TrimSpace(p.Query)
		if !strings.Contains(q, "keypackage") || slices.ContainsFunc(wholeReads, func(w string) bool { return strings.HasPrefix(q, w) }) {
			continue
		}
		checked++
		if reads := fullReads(p.Plan, false); len(reads) > 0 {
			t.Errorf("%q in\n%s", reads, q)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d KeyPackage statements' plans reported; auto_explain is not watching", checked)
	}
}
