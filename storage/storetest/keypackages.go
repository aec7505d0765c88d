package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// newRef returns a random KeyPackageRef (lowercase hex of 32 bytes).
func newRef() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// kpFor is a KeyPackage with this ref that lives for a day, without a cap.
func kpFor(ref string) storage.KeyPackage {
	return storage.KeyPackage{Ref: ref, NotAfter: time.Now().Add(24 * time.Hour)}
}

// capped is a KeyPackage with this ref under the suite's slot cap: three
// slots, evictable after seven days.
func capped(ref string) storage.KeyPackage {
	kp := kpFor(ref)
	kp.SlotCap = 3
	kp.EvictAfter = 7 * 24 * time.Hour
	return kp
}

func mustSaveKP(t *testing.T, s storage.Store, ev *nostr.Event, kp storage.KeyPackage) storage.Result {
	t.Helper()
	res, err := s.SaveKeyPackage(testContext(t), ev, kp)
	if err != nil {
		t.Fatalf("SaveKeyPackage(kind %d, %s): %v", ev.Kind, ev.ID, err)
	}
	return res
}

// saveKPFails asserts that SaveKeyPackage refuses ev with one of want.
func saveKPFails(t *testing.T, s storage.Store, ev *nostr.Event, kp storage.KeyPackage, want ...error) {
	t.Helper()
	_, err := s.SaveKeyPackage(testContext(t), ev, kp)
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("SaveKeyPackage(kind %d, %s) = %v, want %v", ev.Kind, ev.ID, err, want)
}

// daysAgo is a created_at n days before now.
func daysAgo(n float64) nostr.Timestamp {
	return nostr.Timestamp(time.Now().Add(-time.Duration(n * float64(24*time.Hour))).Unix())
}

func keyPackageCases() []testCase {
	return []testCase{
		{"twins: a new version of the same slot with the same Ref replaces the old one and nothing else", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			ref := newRef()
			d := nostr.Tags{{"d", "device"}}
			v1 := a.Event(t, 30443, base, d, "v1")
			legacy := a.Event(t, 443, base, nil, "the 443 twin")
			v2 := a.Event(t, 30443, base+1, d, "v2, same KeyPackage")
			mustSaveKP(t, s, v1, kpFor(ref))
			mustSaveKP(t, s, legacy, kpFor(ref))
			res := mustSaveKP(t, s, v2, kpFor(ref))
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(v1, storage.ReasonReplaced)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(v2, legacy))
			// The KeyPackage lives on: another twin may still be saved.
			mustSaveKP(t, s, a.Event(t, 443, base+2, nil, "one more twin"), kpFor(ref))
		}},
		{"a KeyPackage whose NotAfter or expiration has passed fails with ErrExpired", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			now := time.Now()
			for _, tt := range []struct {
				name     string
				notAfter time.Time
				tags     nostr.Tags
			}{
				{"NotAfter an hour ago", now.Add(-time.Hour), nil},
				{"NotAfter a second ago", now.Add(-time.Second), nil},
				{"expiration passed, NotAfter ahead", now.Add(time.Hour), nostr.Tags{expiration(now.Unix() - 1)}},
			} {
				for _, kind := range []int{443, 30443} {
					ev := a.Event(t, kind, past(), append(nostr.Tags{{"d", "x"}}, tt.tags...), tt.name)
					kp := kpFor(newRef())
					kp.NotAfter = tt.notAfter
					saveKPFails(t, s, ev, kp, storage.ErrExpired)
				}
			}
			if n := count(t, s, nostr.Filter{}); n != 0 {
				t.Fatalf("Count = %d after expired KeyPackages, want 0", n)
			}
		}},
		{"a KeyPackage stops being served at NotAfter and DeleteExpired removes it", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			keep := a.Event(t, 30443, past(), nostr.Tags{{"d", "keep"}}, "keep")
			mustSaveKP(t, s, keep, kpFor(newRef()))
			var ev *nostr.Event
			var notAfter time.Time
			// NotAfter one second from now, on a whole second; a save that
			// straddles the boundary may already see it as expired, so try
			// again.
			for range 3 {
				notAfter = time.Unix(time.Now().Unix()+1, 0)
				ev = a.Event(t, 30443, past(), nostr.Tags{{"d", "short"}}, "short-lived")
				kp := kpFor(newRef())
				kp.NotAfter = notAfter
				if _, err := s.SaveKeyPackage(testContext(t), ev, kp); err == nil {
					break
				} else if !errors.Is(err, storage.ErrExpired) {
					t.Fatalf("SaveKeyPackage: %v", err)
				}
				ev = nil
			}
			if ev == nil {
				t.Fatal("could not save a KeyPackage expiring in one second")
			}
			if served := stored(t, s, ev.ID); !served && time.Now().Before(notAfter) {
				t.Fatal("a KeyPackage before its NotAfter is not served")
			}
			time.Sleep(time.Until(notAfter) + 50*time.Millisecond)
			equalIDs(t, "served after NotAfter", queryIDs(t, s, nostr.Filter{}), ids(keep))
			if n := count(t, s, nostr.Filter{Kinds: []int{30443}}); n != 1 {
				t.Fatalf("Count after NotAfter = %d, want 1", n)
			}
			dels, err := s.DeleteExpired(testContext(t), time.Now())
			if err != nil {
				t.Fatalf("DeleteExpired: %v", err)
			}
			equalDeletions(t, "DeleteExpired", dels, []storage.Deletion{deletion(ev, storage.ReasonExpired)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ids(keep))
		}},
		{"a KeyPackage expires at the earlier of NotAfter and its expiration tag", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			now := time.Now().Unix()
			at := func(sec int64) time.Time { return time.Unix(sec, 0) }
			kp := func(notAfter time.Time) storage.KeyPackage {
				k := kpFor(newRef())
				k.NotAfter = notAfter
				return k
			}
			byNotAfter := a.Event(t, 30443, past(), nostr.Tags{{"d", "1"}}, "NotAfter first")
			byTag := a.Event(t, 30443, past(), nostr.Tags{{"d", "2"}, expiration(now + 600)}, "expiration first")
			edge := a.Event(t, 443, past(), nil, "NotAfter at the edge")
			later := a.Event(t, 30443, past(), nostr.Tags{{"d", "3"}, expiration(now + 3601)}, "both later")
			laterTag := a.Event(t, 443, past(), nostr.Tags{expiration(now + 7200)}, "NotAfter later")
			mustSaveKP(t, s, byNotAfter, kp(at(now+600)))
			mustSaveKP(t, s, byTag, kp(at(now+7200)))
			mustSaveKP(t, s, edge, kp(at(now+3600)))
			mustSaveKP(t, s, later, kp(at(now+7200)))
			mustSaveKP(t, s, laterTag, kp(at(now+3601)))
			dels, err := s.DeleteExpired(testContext(t), at(now+3600))
			if err != nil {
				t.Fatalf("DeleteExpired: %v", err)
			}
			equalDeletions(t, "DeleteExpired", dels, []storage.Deletion{
				deletion(byNotAfter, storage.ReasonExpired),
				deletion(byTag, storage.ReasonExpired),
				deletion(edge, storage.ReasonExpired),
			})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(later, laterTag))
		}},
		{"slot cap: a new slot at the cap evicts the least recently refreshed slot older than EvictAfter", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			slot := func(au Author, d string, at nostr.Timestamp) *nostr.Event {
				return au.Event(t, 30443, at, nostr.Tags{{"d", d}}, "slot "+d)
			}
			oldest := slot(a, "oldest", daysAgo(9))
			old := slot(a, "old", daysAgo(8))
			fresh := slot(a, "fresh", daysAgo(1))
			// Another author's slots, older than all, neither count nor get
			// evicted.
			var foreign []*nostr.Event
			for i := range 3 {
				ev := slot(b, fmt.Sprint("b", i), daysAgo(30))
				foreign = append(foreign, ev)
				mustSaveKP(t, s, ev, capped(newRef()))
			}
			for _, ev := range []*nostr.Event{oldest, old, fresh} {
				if res := mustSaveKP(t, s, ev, capped(newRef())); len(res.Deleted) != 0 {
					t.Fatalf("a slot under the cap deleted %+v", res.Deleted)
				}
			}

			first := slot(a, "new 1", past())
			res := mustSaveKP(t, s, first, capped(newRef()))
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(oldest, storage.ReasonEvicted)})
			saveKPFails(t, s, oldest, capped(newRef()), storage.ErrDeleted)

			second := slot(a, "new 2", past())
			res = mustSaveKP(t, s, second, capped(newRef()))
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(old, storage.ReasonEvicted)})

			// Every slot is now younger than EvictAfter: no room.
			third := slot(a, "new 3", past())
			saveKPFails(t, s, third, capped(newRef()), storage.ErrSlotCap)
			if stored(t, s, third.ID) {
				t.Fatal("a refused slot was stored")
			}
			equalIDs(t, "author's slots", queryIDs(t, s, nostr.Filter{Authors: []string{a.PubKey}}), ordered(first, second, fresh))
			equalIDs(t, "other author's slots", queryIDs(t, s, nostr.Filter{Authors: []string{b.PubKey}}), ordered(foreign...))

			// Replacing the version of an existing slot at the cap is fine.
			refreshed := slot(a, "fresh", past()+1)
			res = mustSaveKP(t, s, refreshed, capped(newRef()))
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(fresh, storage.ReasonReplaced)})
			// A kind 443 carrying a new KeyPackage counts like a slot.
			saveKPFails(t, s, a.Event(t, 443, past(), nil, "legacy"), capped(newRef()), storage.ErrSlotCap)
			equalIDs(t, "author's slots", queryIDs(t, s, nostr.Filter{Authors: []string{a.PubKey}}), ordered(first, second, refreshed))
		}},
		{"slot cap: a refused KeyPackage deletes nothing, and a twin at the cap adds none", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			var slots []*nostr.Event
			refs := []string{newRef(), newRef(), newRef()}
			for i := range 3 {
				ev := a.Event(t, 30443, past()+nostr.Timestamp(i), nostr.Tags{{"d", fmt.Sprint(i)}}, "fresh")
				slots = append(slots, ev)
				mustSaveKP(t, s, ev, capped(refs[i]))
			}
			refused := a.Event(t, 30443, past()+5, nostr.Tags{{"d", "one too many"}}, "refused")
			saveKPFails(t, s, refused, capped(newRef()), storage.ErrSlotCap)
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(slots...))
			// Twins of live KeyPackages, as a 443 or in another slot, are
			// not new KeyPackages: the cap lets them in and nothing goes.
			legacy := a.Event(t, 443, past(), nil, "twin of slot 0")
			moved := a.Event(t, 30443, past()+6, nostr.Tags{{"d", "another slot"}}, "twin of slot 1")
			for _, tw := range []struct {
				ev  *nostr.Event
				ref string
			}{{legacy, refs[0]}, {moved, refs[1]}} {
				if res := mustSaveKP(t, s, tw.ev, capped(tw.ref)); len(res.Deleted) != 0 {
					t.Fatalf("a twin at the cap deleted %+v", res.Deleted)
				}
			}
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(append(slots, legacy, moved)...))
		}},
		{"slot cap: legacy 443s count, and the least recently refreshed KeyPackage goes first", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			// A client publishing a fresh 443 per session: the oldest go
			// while they are older than EvictAfter, then the cap holds.
			old := []*nostr.Event{
				a.Event(t, 443, daysAgo(12), nil, "session 1"),
				a.Event(t, 443, daysAgo(11), nil, "session 2"),
				a.Event(t, 443, daysAgo(10), nil, "session 3"),
			}
			for _, ev := range old {
				mustSaveKP(t, s, ev, capped(newRef()))
			}
			var fresh []*nostr.Event
			for i := range 3 {
				ev := a.Event(t, 443, past()+nostr.Timestamp(i), nil, fmt.Sprint("recent session ", i))
				res := mustSaveKP(t, s, ev, capped(newRef()))
				equalDeletions(t, fmt.Sprint("Result.Deleted of recent session ", i), res.Deleted,
					[]storage.Deletion{deletion(old[i], storage.ReasonEvicted)})
				fresh = append(fresh, ev)
			}
			saveKPFails(t, s, a.Event(t, 443, past()+9, nil, "one session too many"), capped(newRef()), storage.ErrSlotCap)
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(fresh...))
			for _, ev := range old {
				saveKPFails(t, s, ev, capped(newRef()), storage.ErrDeleted)
			}
		}},
		{"slot cap: concurrent new slots on two handles never exceed the cap", func(t *testing.T, open Opener) {
			handles := []storage.Store{open(t), open(t)}
			a := NewAuthor(t)
			const tries = 8
			evs := make([]*nostr.Event, tries)
			for i := range evs {
				evs[i] = a.Event(t, 30443, past()+nostr.Timestamp(i), nostr.Tags{{"d", fmt.Sprint("device ", i)}}, "fresh")
			}
			errs := make([]error, tries)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, ev := range evs {
				wg.Go(func() {
					<-start
					_, errs[i] = handles[i%2].SaveKeyPackage(testContext(t), ev, capped(newRef()))
				})
			}
			close(start)
			wg.Wait()
			var saved []*nostr.Event
			for i, err := range errs {
				switch {
				case err == nil:
					saved = append(saved, evs[i])
				case errors.Is(err, storage.ErrSlotCap):
				default:
					t.Errorf("SaveKeyPackage(slot %d) = %v, want nil or ErrSlotCap", i, err)
				}
			}
			if len(saved) != 3 {
				t.Fatalf("%d slots accepted, want 3", len(saved))
			}
			for _, h := range handles {
				equalIDs(t, "slots", queryIDs(t, h, nostr.Filter{Authors: []string{a.PubKey}}), ordered(saved...))
			}
		}},
	}
}
