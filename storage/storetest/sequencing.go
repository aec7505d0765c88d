package storetest

import (
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// GroupEvent signs a kind 445 event for group h with extra tags after the
// "h", and random content so that no two calls make the same event.
func GroupEvent(t testing.TB, a Author, h string, at nostr.Timestamp, extra ...nostr.Tag) *nostr.Event {
	t.Helper()
	return a.Event(t, 445, at, append(nostr.Tags{{"h", h}}, extra...), "ciphertext "+rand.Text())
}

func group(t *testing.T, a Author, h string, at nostr.Timestamp, extra ...nostr.Tag) *nostr.Event {
	t.Helper()
	return GroupEvent(t, a, h, at, extra...)
}

func sequencingCases() []testCase {
	return []testCase{
		{"kind 445 events get seq 1, 2, 3 per group, independently", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			saves := []struct {
				ev   *nostr.Event
				want int64
			}{
				{group(t, a, "g1", base), 1},
				{group(t, b, "g1", base), 2},
				{group(t, a, "g2", base-10), 1},
				{group(t, b, "g1", base-5), 3},
				{group(t, a, "g2", base+10), 2},
			}
			for i, sv := range saves {
				if res := mustSave(t, s, sv.ev); res.Seq != sv.want {
					t.Fatalf("save %d: Seq = %d, want %d", i, res.Seq, sv.want)
				}
			}
		}},
		{"events that are not a 445 with exactly one h get seq 0", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			for _, ev := range []*nostr.Event{
				a.Event(t, 1, base, nostr.Tags{{"h", "g1"}}, "not 445"),
				a.Event(t, 445, base, nil, "no h"),
				a.Event(t, 445, base, nostr.Tags{{"h", "g1"}, {"h", "g2"}}, "two h"),
				a.Event(t, 30443, base, nostr.Tags{{"d", "kp"}, {"h", "g1"}}, "key package"),
			} {
				if res := mustSave(t, s, ev); res.Seq != 0 {
					t.Fatalf("%q: Seq = %d, want 0", ev.Content, res.Seq)
				}
			}
			if res := mustSave(t, s, group(t, a, "g1", base)); res.Seq != 1 {
				t.Fatalf("first real group event: Seq = %d, want 1", res.Seq)
			}
		}},
		{"a duplicate 445 fails with ErrDuplicate and carries the original seq", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			first, second := group(t, a, "g", past()), group(t, a, "g", past()+1)
			mustSaveAll(t, s, first, second)
			if res := saveFails(t, s, first, storage.ErrDuplicate); res.Seq != 1 {
				t.Fatalf("duplicate of seq 1: Seq = %d", res.Seq)
			}
			if res := saveFails(t, s, second, storage.ErrDuplicate); res.Seq != 2 {
				t.Fatalf("duplicate of seq 2: Seq = %d", res.Seq)
			}
			if res := mustSave(t, s, group(t, a, "g", past()+2)); res.Seq != 3 {
				t.Fatalf("after duplicates: Seq = %d, want 3", res.Seq)
			}
		}},
		{"deleting or expiring a group event never lets its seq be reused", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			now := time.Now().Unix()
			evs := []*nostr.Event{
				group(t, a, "g", base),
				group(t, a, "g", base+1),
				group(t, a, "g", base+2, expiration(now+600)),
			}
			for i, ev := range evs {
				if res := mustSave(t, s, ev); res.Seq != int64(i+1) {
					t.Fatalf("save %d: Seq = %d", i, res.Seq)
				}
			}
			ctx := testContext(t)
			if _, err := s.Delete(ctx, []string{evs[1].ID}, storage.ReasonAdmin); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if dels, err := s.DeleteExpired(ctx, time.Unix(now+600, 0)); err != nil || len(dels) != 1 {
				t.Fatalf("DeleteExpired = %+v, %v; want the seq 3 event", dels, err)
			}
			next := group(t, a, "g", base+3)
			if res := mustSave(t, s, next); res.Seq != 4 {
				t.Fatalf("after deleting seq 2 and expiring seq 3: Seq = %d, want 4", res.Seq)
			}
			// Deleting the newest, then a kind 5 deleting another: still no reuse.
			if _, err := s.Delete(ctx, []string{next.ID}, storage.ReasonAdmin); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			mustSave(t, s, a.Event(t, 5, base+4, nostr.Tags{{"e", evs[0].ID}, {"k", "445"}}, ""))
			if res := mustSave(t, s, group(t, a, "g", base+5)); res.Seq != 5 {
				t.Fatalf("after deleting every stored event: Seq = %d, want 5", res.Seq)
			}
		}},
		{"concurrent saves from two handles give each group a gapless, unique seq set", func(t *testing.T, open Opener) {
			handles := []storage.Store{open(t), open(t)}
			authors := []Author{NewAuthor(t), NewAuthor(t)}
			base := past()
			const perGroup = 120
			var evs []*nostr.Event
			for i := range perGroup {
				for _, h := range []string{"g1", "g2"} {
					evs = append(evs, group(t, authors[i%2], h, base+nostr.Timestamp(i%7)))
				}
			}
			results := saveConcurrently(t, handles, 8, evs)
			seqs := map[string][]int64{}
			for i, res := range results {
				h := evs[i].Tags.Find("h")[1]
				seqs[h] = append(seqs[h], res.Seq)
			}
			for h, got := range seqs {
				slices.Sort(got)
				for i, seq := range got {
					if seq != int64(i+1) {
						t.Fatalf("group %s: sorted seqs %v are not 1..%d", h, got, perGroup)
					}
				}
			}
			if len(seqs) != 2 {
				t.Fatalf("seqs for %d groups, want 2", len(seqs))
			}
			// Every seq is still answered for a re-sent event.
			for i, ev := range evs[:10] {
				if res := saveFails(t, handles[1], ev, storage.ErrDuplicate); res.Seq != results[i].Seq {
					t.Fatalf("duplicate %d: Seq = %d, want %d", i, res.Seq, results[i].Seq)
				}
			}
		}},
	}
}
