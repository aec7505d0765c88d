package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// groupLog collects what GroupLog yields.
func groupLog(t *testing.T, s storage.Store, h string, after int64, limit int) []storage.Sequenced {
	t.Helper()
	var out []storage.Sequenced
	for sq, err := range s.GroupLog(testContext(t), h, after, limit) {
		if err != nil {
			t.Fatalf("GroupLog(%q, %d, %d): %v", h, after, limit, err)
		}
		out = append(out, sq)
	}
	return out
}

func lastSeq(t *testing.T, s storage.Store, h string) int64 {
	t.Helper()
	n, err := s.LastSeq(testContext(t), h)
	if err != nil {
		t.Fatalf("LastSeq(%q): %v", h, err)
	}
	return n
}

// saveExpiringSoon saves a 445 of group h that expires about a second from
// now, and returns it with its expiration. A save straddling a second
// boundary may already count as expired, so it tries again.
func saveExpiringSoon(t *testing.T, s storage.Store, a Author, h string, at nostr.Timestamp) (*nostr.Event, int64) {
	t.Helper()
	for range 3 {
		exp := time.Now().Unix() + 1
		ev := group(t, a, h, at, expiration(exp))
		_, err := s.Save(testContext(t), ev)
		if err == nil {
			return ev, exp
		}
		if !errors.Is(err, storage.ErrExpired) {
			t.Fatalf("Save: %v", err)
		}
	}
	t.Fatal("could not save an event expiring in one second")
	return nil, 0
}

func groupLogCases() []testCase {
	return []testCase{
		{"GroupLog yields a group in ascending seq with after and limit, skipping deleted and expired events", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			// created_at falls as seq rises: the log is in seq order, not
			// Query's.
			bySeq := map[int64]*nostr.Event{}
			var exp5 int64
			for seq := int64(1); seq <= 6; seq++ {
				var ev *nostr.Event
				if seq == 5 {
					ev, exp5 = saveExpiringSoon(t, s, a, "g", base-nostr.Timestamp(seq))
				} else {
					ev = group(t, a, "g", base-nostr.Timestamp(seq))
					if res := mustSave(t, s, ev); res.Seq != seq {
						t.Fatalf("save %d: Seq = %d", seq, res.Seq)
					}
				}
				bySeq[seq] = ev
				mustSave(t, s, group(t, a, "other", base)) // interleaved, numbered apart
			}
			if _, err := s.Delete(testContext(t), []string{bySeq[2].ID}, storage.ReasonAdmin); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			mustSave(t, s, a.Event(t, 5, base, nostr.Tags{{"e", bySeq[4].ID}, {"k", "445"}}, ""))
			time.Sleep(time.Until(time.Unix(exp5, 0)) + 50*time.Millisecond) // seq 5 expires
			for _, tc := range []struct {
				after int64
				limit int
				want  []int64
			}{
				{0, 0, []int64{1, 3, 6}},
				{0, -1, []int64{1, 3, 6}},
				{1, 0, []int64{3, 6}},
				{0, 2, []int64{1, 3}},
				{3, 1, []int64{6}},
				{2, 5, []int64{3, 6}},
				{6, 0, nil},
				{100, 0, nil},
			} {
				got := groupLog(t, s, "g", tc.after, tc.limit)
				var seqs []int64
				for _, sq := range got {
					seqs = append(seqs, sq.Seq)
					if want := bySeq[sq.Seq]; sq.Event == nil || sq.Event.ID != want.ID || sq.Event.Content != want.Content {
						t.Fatalf("after %d: seq %d carries %+v, want %s", tc.after, sq.Seq, sq.Event, want.ID)
					}
					if sq.Released {
						t.Fatalf("seq %d is flagged released, but no slot was ever claimed", sq.Seq)
					}
					if ok, err := sq.Event.CheckSignature(); err != nil || !ok {
						t.Fatalf("seq %d: the event read back does not verify: %v", sq.Seq, err)
					}
				}
				if fmt.Sprint(seqs) != fmt.Sprint(tc.want) {
					t.Fatalf("GroupLog(after %d, limit %d) seqs = %v, want %v", tc.after, tc.limit, seqs, tc.want)
				}
			}
			if got := groupLog(t, s, "other", 0, 0); len(got) != 6 || got[0].Seq != 1 || got[5].Seq != 6 {
				t.Fatalf("the other group's log has %d events, want seqs 1..6", len(got))
			}
			if got := groupLog(t, s, "nobody", 0, 0); len(got) != 0 {
				t.Fatalf("an unknown group's log has %d events", len(got))
			}
			// Events that are not a 445 with exactly one h never appear.
			mustSave(t, s, a.Event(t, 1, base, nostr.Tags{{"h", "g"}}, "not 445"))
			mustSave(t, s, a.Event(t, 445, base, nostr.Tags{{"h", "g"}, {"h", "x"}}, "two h"))
			if got := groupLog(t, s, "g", 0, 0); len(got) != 3 {
				t.Fatalf("after saving non-group events: %d events in the log, want 3", len(got))
			}
		}},
		{"LastSeq is the group's counter: 0 before any event, unchanged by deletions and retention", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			if n := lastSeq(t, s, "g"); n != 0 {
				t.Fatalf("LastSeq of an unknown group = %d", n)
			}
			var evs []*nostr.Event
			for i := range 3 {
				evs = append(evs, group(t, a, "g", past()+nostr.Timestamp(i)))
			}
			mustSaveAll(t, s, evs...)
			mustSave(t, s, group(t, a, "h2", past()))
			if n := lastSeq(t, s, "g"); n != 3 {
				t.Fatalf("LastSeq after 3 saves = %d", n)
			}
			if _, err := s.Delete(testContext(t), []string{evs[2].ID}, storage.ReasonAdmin); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := s.DeleteGroupEvents(testContext(t), time.Now().Add(time.Minute)); err != nil {
				t.Fatalf("DeleteGroupEvents: %v", err)
			}
			if n := lastSeq(t, s, "g"); n != 3 {
				t.Fatalf("LastSeq after deleting every event = %d, want 3", n)
			}
			if n := lastSeq(t, s, "h2"); n != 1 {
				t.Fatalf("LastSeq of the second group = %d, want 1", n)
			}
		}},
		{"DeleteGroupEvents removes only kind 445 created before the cutoff, and numbers are never reused", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			now := nostr.Now()
			old1, old2 := group(t, a, "g", now-7200), group(t, a, "g2", now-7200)
			fresh := group(t, a, "g", now-60)
			oldNote := a.Event(t, 1, now-7200, nostr.Tags{{"h", "g"}}, "not a group event")
			oldKP := a.Event(t, 30443, now-7200, nostr.Tags{{"d", "kp"}}, "not a group event either")
			mustSaveAll(t, s, old1, fresh, old2, oldNote, oldKP)
			dels, err := s.DeleteGroupEvents(testContext(t), time.Unix(int64(now)-3600, 0))
			if err != nil {
				t.Fatalf("DeleteGroupEvents: %v", err)
			}
			equalDeletions(t, "DeleteGroupEvents", dels,
				[]storage.Deletion{deletion(old1, storage.ReasonRetention), deletion(old2, storage.ReasonRetention)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(fresh, oldNote, oldKP))
			if got := groupLog(t, s, "g", 0, 0); len(got) != 1 || got[0].Seq != 2 || got[0].Event.ID != fresh.ID {
				t.Fatalf("log of g after retention = %+v, want only seq 2", got)
			}
			// At the cutoff exactly: kept (strictly before is removed).
			if dels, err := s.DeleteGroupEvents(testContext(t), time.Unix(int64(now)-60, 0)); err != nil || len(dels) != 0 {
				t.Fatalf("DeleteGroupEvents at fresh's created_at = %+v, %v; want nothing", dels, err)
			}
			if res := mustSave(t, s, group(t, a, "g", now-30)); res.Seq != 3 {
				t.Fatalf("next seq after retention = %d, want 3", res.Seq)
			}
			if res := mustSave(t, s, group(t, a, "g2", now-30)); res.Seq != 2 {
				t.Fatalf("next seq of g2 after retention removed its only event = %d, want 2", res.Seq)
			}
		}},
	}
}
