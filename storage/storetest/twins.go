package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// The twin rule (storage.KeyPackage): an author's 443 and 30443 events
// carrying one KeyPackage coexist, and whatever removes one removes all of
// them in the same transaction and tombstones their Ref. Every trigger is
// run twice, with the 443 saved first and with the 30443 saved first.

// twins is one KeyPackage published as a legacy 443 and as a 30443 in slot
// "device", the way clients publish during the 443 → 30443 transition.
type twins struct {
	author  Author
	ref     string
	legacy  *nostr.Event // kind 443
	current *nostr.Event // kind 30443, d "device"
}

// saveTwins publishes a fresh KeyPackage as both kinds, in the order given,
// with the rules kp gives its Ref, and checks that both are stored and
// served and that neither save deleted anything.
func saveTwins(t *testing.T, s storage.Store, legacyFirst bool, at nostr.Timestamp, kp func(string) storage.KeyPackage) twins {
	t.Helper()
	a := NewAuthor(t)
	tw := twins{author: a, ref: newRef()}
	tw.legacy = a.Event(t, 443, at, nostr.Tags{{"encoding", "base64"}}, "the KeyPackage, as a legacy 443")
	tw.current = a.Event(t, 30443, at, nostr.Tags{{"d", "device"}, {"encoding", "base64"}}, "the KeyPackage, as a 30443")
	order := []*nostr.Event{tw.current, tw.legacy}
	if legacyFirst {
		order = []*nostr.Event{tw.legacy, tw.current}
	}
	for _, ev := range order {
		if res := mustSaveKP(t, s, ev, kp(tw.ref)); len(res.Deleted) != 0 {
			t.Fatalf("saving a twin (kind %d) deleted %+v", ev.Kind, res.Deleted)
		}
	}
	equalIDs(t, "served twins", queryIDs(t, s, nostr.Filter{Authors: []string{a.PubKey}}), ordered(tw.legacy, tw.current))
	return tw
}

// other is the twin of ev.
func (tw twins) other(ev *nostr.Event) *nostr.Event {
	if ev == tw.legacy {
		return tw.current
	}
	return tw.legacy
}

// assertDead checks that no event of tw is served or can be saved again,
// and that a new event carrying the same KeyPackage is refused too.
func (tw twins) assertDead(t *testing.T, s storage.Store, kp func(string) storage.KeyPackage) {
	t.Helper()
	if got := queryIDs(t, s, nostr.Filter{IDs: []string{tw.legacy.ID, tw.current.ID}}); len(got) != 0 {
		t.Fatalf("twins still served after their KeyPackage died: %v", got)
	}
	for _, ev := range []*nostr.Event{tw.legacy, tw.current} {
		// An event whose own expiration passed may be refused as expired.
		saveKPFails(t, s, ev, kp(tw.ref), storage.ErrDeleted, storage.ErrExpired)
	}
	later := nostr.Now()
	for _, ev := range []*nostr.Event{
		tw.author.Event(t, 443, later, nil, "a new twin of a deleted KeyPackage"),
		tw.author.Event(t, 30443, later, nostr.Tags{{"d", "fresh slot"}}, "a new twin of a deleted KeyPackage"),
	} {
		saveKPFails(t, s, ev, kp(tw.ref), storage.ErrDeleted)
	}
}

// bothOrders runs body with the 443 saved first and with the 30443 first.
// Both runs share the case's database (each uses its own authors).
func bothOrders(t *testing.T, body func(t *testing.T, legacyFirst bool)) {
	for _, legacyFirst := range []bool{true, false} {
		name := "30443 first"
		if legacyFirst {
			name = "443 first"
		}
		t.Run(name, func(t *testing.T) { body(t, legacyFirst) })
	}
}

func twinCases() []testCase {
	return []testCase{
		{"twins coexist: both are stored and served, and re-sending either deletes nothing", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				s := open(t)
				tw := saveTwins(t, s, legacyFirst, past(), kpFor)
				// A 30443 in another slot carrying the same KeyPackage is a
				// twin too, and joins them.
				moved := tw.author.Event(t, 30443, past()+1, nostr.Tags{{"d", "other device"}}, "same KeyPackage, other slot")
				if res := mustSaveKP(t, s, moved, kpFor(tw.ref)); len(res.Deleted) != 0 {
					t.Fatalf("a third twin deleted %+v", res.Deleted)
				}
				for _, ev := range []*nostr.Event{tw.legacy, tw.current, moved} {
					if _, err := s.SaveKeyPackage(testContext(t), ev, kpFor(tw.ref)); !errors.Is(err, storage.ErrDuplicate) {
						t.Fatalf("re-sending a stored twin (kind %d) = %v, want ErrDuplicate", ev.Kind, err)
					}
				}
				byAuthor := nostr.Filter{Authors: []string{tw.author.PubKey}}
				equalIDs(t, "served", queryIDs(t, s, byAuthor), ordered(tw.legacy, tw.current, moved))
				if n := count(t, s, nostr.Filter{Authors: byAuthor.Authors, Kinds: []int{443, 30443}}); n != 3 {
					t.Fatalf("Count = %d, want 3", n)
				}
			})
		}},
		{"twins die together: a kind 5 naming either by e deletes every twin and tombstones the KeyPackage", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				for _, targetLegacy := range []bool{true, false} {
					s := open(t)
					tw := saveTwins(t, s, legacyFirst, past(), kpFor)
					target := tw.current
					if targetLegacy {
						target = tw.legacy
					}
					req := tw.author.Event(t, 5, past()+10, nostr.Tags{{"e", target.ID}, {"k", fmt.Sprint(target.Kind)}}, "used")
					res := mustSave(t, s, req)
					equalDeletions(t, fmt.Sprintf("deleting the kind %d", target.Kind), res.Deleted, []storage.Deletion{
						deletion(target, storage.ReasonDeletionRequest), deletion(tw.other(target), storage.ReasonTwin)})
					tw.assertDead(t, s, kpFor)
					equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{Authors: []string{tw.author.PubKey}}), ids(req))
				}
			})
		}},
		{"twins die together: a kind 5 naming the 30443's address deletes the 443 twin", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				s := open(t)
				tw := saveTwins(t, s, legacyFirst, past(), kpFor)
				req := tw.author.Event(t, 5, past()+10, nostr.Tags{{"a", address(30443, tw.author.PubKey, "device")}}, "used")
				res := mustSave(t, s, req)
				equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{
					deletion(tw.current, storage.ReasonDeletionRequest), deletion(tw.legacy, storage.ReasonTwin)})
				tw.assertDead(t, s, kpFor)
			})
		}},
		{"twins die together: a new version of the 30443 slot with another KeyPackage deletes the 443 twin", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				s := open(t)
				tw := saveTwins(t, s, legacyFirst, past(), kpFor)
				next := tw.author.Event(t, 30443, past()+10, nostr.Tags{{"d", "device"}}, "the replacement KeyPackage")
				res := mustSaveKP(t, s, next, kpFor(newRef()))
				equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{
					deletion(tw.current, storage.ReasonReplaced), deletion(tw.legacy, storage.ReasonTwin)})
				equalIDs(t, "served", queryIDs(t, s, nostr.Filter{Authors: []string{tw.author.PubKey}}), ids(next))
				for _, ev := range []*nostr.Event{tw.legacy, tw.current} {
					saveKPFails(t, s, ev, kpFor(tw.ref), storage.ErrDeleted)
				}
				saveKPFails(t, s, tw.author.Event(t, 443, past()+11, nil, "a new twin of the replaced KeyPackage"),
					kpFor(tw.ref), storage.ErrDeleted)
			})
		}},
		{"twins die together: the expiry of one deletes the others, and no twin brings it back", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				s := open(t)
				a := NewAuthor(t)
				ref := newRef()
				now := time.Now().Unix()
				// The 443 carries a NIP-40 expiration an hour ahead; the
				// 30443 lives for the day its KeyPackage does.
				legacy := a.Event(t, 443, past(), nostr.Tags{expiration(now + 3600)}, "expires first")
				current := a.Event(t, 30443, past(), nostr.Tags{{"d", "device"}}, "lives longer")
				order := []*nostr.Event{current, legacy}
				if legacyFirst {
					order = []*nostr.Event{legacy, current}
				}
				for _, ev := range order {
					mustSaveKP(t, s, ev, kpFor(ref))
				}
				dels, err := s.DeleteExpired(testContext(t), time.Unix(now+3600, 0))
				if err != nil {
					t.Fatalf("DeleteExpired: %v", err)
				}
				// Twins expire together (the 30443 took the 443's expiry).
				equalDeletions(t, "DeleteExpired", dels, []storage.Deletion{
					deletion(legacy, storage.ReasonExpired), deletion(current, storage.ReasonExpired)})
				twins{author: a, ref: ref, legacy: legacy, current: current}.assertDead(t, s, kpFor)
			})
		}},
		{"twins expire together: once the earliest expiration among them passes, none is served", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				s := open(t)
				a := NewAuthor(t)
				ref := newRef()
				var legacy, current *nostr.Event
				// A save that straddles the second boundary may already see
				// the expiration as passed; try again then.
				for range 3 {
					end := time.Now().Unix() + 2
					legacy = a.Event(t, 443, past(), nostr.Tags{expiration(end)}, "expires first")
					current = a.Event(t, 30443, past(), nostr.Tags{{"d", "device"}}, "no expiration of its own")
					order := []*nostr.Event{current, legacy}
					if legacyFirst {
						order = []*nostr.Event{legacy, current}
					}
					var err error
					for _, ev := range order {
						if _, err = s.SaveKeyPackage(testContext(t), ev, kpFor(ref)); err != nil {
							break
						}
					}
					if err == nil {
						break
					}
					if !errors.Is(err, storage.ErrExpired) {
						t.Fatalf("SaveKeyPackage: %v", err)
					}
					ref, legacy = newRef(), nil
				}
				if legacy == nil {
					t.Fatal("could not save twins expiring in two seconds")
				}
				byAuthor := nostr.Filter{Authors: []string{a.PubKey}}
				equalIDs(t, "served before the expiration", queryIDs(t, s, byAuthor), ordered(legacy, current))
				exp, _ := strconv.ParseInt(legacy.Tags.GetFirst([]string{"expiration"}).Value(), 10, 64)
				time.Sleep(time.Until(time.Unix(exp, 0)) + 50*time.Millisecond)
				equalIDs(t, "served after the expiration", queryIDs(t, s, byAuthor), nil)
				if n := count(t, s, byAuthor); n != 0 {
					t.Fatalf("Count after the expiration = %d, want 0", n)
				}
				// A new twin of the expired KeyPackage is refused.
				saveKPFails(t, s, a.Event(t, 443, nostr.Now(), nil, "late twin"), kpFor(ref), storage.ErrExpired, storage.ErrDeleted)
				dels, err := s.DeleteExpired(testContext(t), time.Now())
				if err != nil {
					t.Fatalf("DeleteExpired: %v", err)
				}
				for _, d := range dels {
					if d.ID != legacy.ID && d.ID != current.ID {
						t.Fatalf("DeleteExpired removed %s, not one of the twins", d.ID)
					}
				}
				twins{author: a, ref: ref, legacy: legacy, current: current}.assertDead(t, s, kpFor)
			})
		}},
		{"twins die together: evicting a KeyPackage at the slot cap takes its twins", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				s := open(t)
				tw := saveTwins(t, s, legacyFirst, daysAgo(9), capped)
				// Both twins share created_at; the newest of them (lower id
				// on a tie) goes as evicted, the other as its twin.
				newest := tw.legacy
				if tw.current.ID < tw.legacy.ID {
					newest = tw.current
				}
				for i := range 2 {
					mustSaveKP(t, s, tw.author.Event(t, 30443, past()+nostr.Timestamp(i), nostr.Tags{{"d", fmt.Sprint("new ", i)}}, "fresh"), capped(newRef()))
				}
				third := tw.author.Event(t, 443, past()+5, nil, "the KeyPackage that needs room")
				res := mustSaveKP(t, s, third, capped(newRef()))
				equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{
					deletion(newest, storage.ReasonEvicted), deletion(tw.other(newest), storage.ReasonTwin)})
				tw.assertDead(t, s, capped)
			})
		}},
		{"twins die together: Delete of one (a hand-out claim, banevent) deletes the others", func(t *testing.T, open Opener) {
			bothOrders(t, func(t *testing.T, legacyFirst bool) {
				for _, reason := range []storage.Reason{storage.ReasonClaimed, storage.ReasonAdmin} {
					s := open(t)
					tw := saveTwins(t, s, legacyFirst, past(), kpFor)
					target := tw.legacy
					if legacyFirst {
						target = tw.current // the one saved second
					}
					dels, err := s.Delete(testContext(t), []string{target.ID}, reason)
					if err != nil {
						t.Fatalf("Delete: %v", err)
					}
					equalDeletions(t, "Delete", dels, []storage.Deletion{
						deletion(target, reason), deletion(tw.other(target), storage.ReasonTwin)})
					tw.assertDead(t, s, kpFor)
				}
			})
		}},
		{"twins die together: a ban deletes every twin and the KeyPackage stays dead", twinsDieOnBan},
		{"twins die together: a request to vanish deletes every twin and the KeyPackage stays dead", twinsDieOnVanish},
		{"twins: a twin saved while its KeyPackage is deleted on another handle is never left behind", func(t *testing.T, open Opener) {
			handles := []storage.Store{open(t), open(t)}
			const rounds = 20
			for i := range rounds {
				a := NewAuthor(t)
				ref := newRef()
				current := a.Event(t, 30443, past(), nostr.Tags{{"d", "device"}}, fmt.Sprint("round ", i))
				mustSaveKP(t, handles[0], current, kpFor(ref))
				legacy := a.Event(t, 443, past(), nil, fmt.Sprint("twin, round ", i))
				var (
					wg      sync.WaitGroup
					saveErr error
					delErr  error
				)
				start := make(chan struct{})
				wg.Go(func() {
					<-start
					_, saveErr = handles[1].SaveKeyPackage(testContext(t), legacy, kpFor(ref))
				})
				wg.Go(func() {
					<-start
					_, delErr = handles[0].Delete(testContext(t), []string{current.ID}, storage.ReasonAdmin)
				})
				close(start)
				wg.Wait()
				if delErr != nil {
					t.Fatalf("round %d: Delete: %v", i, delErr)
				}
				if saveErr != nil && !errors.Is(saveErr, storage.ErrDeleted) {
					t.Fatalf("round %d: saving the twin = %v, want nil or ErrDeleted", i, saveErr)
				}
				for _, h := range handles {
					if got := queryIDs(t, h, nostr.Filter{Authors: []string{a.PubKey}}); len(got) != 0 {
						t.Fatalf("round %d: the twin outlived its KeyPackage: %v (save: %v)", i, got, saveErr)
					}
				}
			}
		}},
	}
}

// twinsDieOnBan: a ban deletes every twin as banned, and neither can be
// saved again. RunOneEventChunks runs it too, with a chunk ending between
// the twins.
func twinsDieOnBan(t *testing.T, open Opener) {
	bothOrders(t, func(t *testing.T, legacyFirst bool) {
		s := open(t)
		tw := saveTwins(t, s, legacyFirst, past(), kpFor)
		dels, err := s.Ban(testContext(t), tw.author.PubKey)
		if err != nil {
			t.Fatalf("Ban: %v", err)
		}
		equalDeletions(t, "Ban", dels, []storage.Deletion{
			deletion(tw.legacy, storage.ReasonBanned), deletion(tw.current, storage.ReasonBanned)})
		equalIDs(t, "served", queryIDs(t, s, nostr.Filter{Authors: []string{tw.author.PubKey}}), nil)
		for _, ev := range []*nostr.Event{tw.legacy, tw.current} {
			saveKPFails(t, s, ev, kpFor(tw.ref), storage.ErrDeleted, storage.ErrBanned)
		}
	})
}

// twinsDieOnVanish: a request to vanish deletes every twin as vanished,
// and the KeyPackage cannot come back. RunOneEventChunks runs it too.
func twinsDieOnVanish(t *testing.T, open Opener) {
	bothOrders(t, func(t *testing.T, legacyFirst bool) {
		s := open(t)
		tw := saveTwins(t, s, legacyFirst, past(), kpFor)
		req := tw.author.Event(t, 62, past()+10, nostr.Tags{{"relay", "ALL_RELAYS"}}, "")
		res := mustSave(t, s, req)
		equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{
			deletion(tw.legacy, storage.ReasonVanish), deletion(tw.current, storage.ReasonVanish)})
		// After the request, the author may publish again, but not the
		// KeyPackage that vanished.
		saveKPFails(t, s, tw.author.Event(t, 443, nostr.Now(), nil, "the vanished KeyPackage again"), kpFor(tw.ref), storage.ErrDeleted)
		mustSaveKP(t, s, tw.author.Event(t, 443, nostr.Now(), nil, "a new KeyPackage"), kpFor(newRef()))
	})
}
