package storetest

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

func expiration(at int64) nostr.Tag { return nostr.Tag{"expiration", strconv.FormatInt(at, 10)} }

func expirationCases() []testCase {
	return []testCase{
		{"an already-expired event fails with ErrExpired and is not stored", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			now := time.Now().Unix()
			for _, exp := range []int64{now - 3600, now - 1} {
				ev := a.Event(t, 1, past(), nostr.Tags{expiration(exp)}, "expired")
				saveFails(t, s, ev, storage.ErrExpired)
				if n := count(t, s, nostr.Filter{}); n != 0 {
					t.Fatalf("Count = %d after an expired event, want 0", n)
				}
			}
		}},
		{"an event that expires stops being served and DeleteExpired removes it", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			keep := a.Event(t, 1, past(), nil, "keep")
			mustSave(t, s, keep)
			var ev *nostr.Event
			var exp int64
			// Expire one second from now; a save that straddles a second
			// boundary may already see it as expired, so try again.
			for range 3 {
				exp = time.Now().Unix() + 1
				ev = a.Event(t, 1, past(), nostr.Tags{expiration(exp)}, "short-lived")
				if _, err := s.Save(testContext(t), ev); err == nil {
					break
				} else if !errors.Is(err, storage.ErrExpired) {
					t.Fatalf("Save: %v", err)
				}
				ev = nil
			}
			if ev == nil {
				t.Fatal("could not save an event expiring in one second")
			}
			// Served until it expires (checked only if the query finished in
			// time, which it almost always does).
			if served := stored(t, s, ev.ID); !served && time.Now().Unix() < exp {
				t.Fatal("an event that has not expired yet is not served")
			}
			time.Sleep(time.Until(time.Unix(exp, 0)) + 50*time.Millisecond)
			equalIDs(t, "served after expiry", queryIDs(t, s, nostr.Filter{}), ids(keep))
			equalIDs(t, "keys after expiry", keyIDs(t, s, nostr.Filter{}), ids(keep))
			if n := count(t, s, nostr.Filter{IDs: []string{ev.ID}}); n != 0 {
				t.Fatalf("Count of the expired event = %d, want 0", n)
			}
			dels, err := s.DeleteExpired(testContext(t), time.Now())
			if err != nil {
				t.Fatalf("DeleteExpired: %v", err)
			}
			equalDeletions(t, "DeleteExpired", dels, []storage.Deletion{deletion(ev, storage.ReasonExpired)})
			if dels, err := s.DeleteExpired(testContext(t), time.Now()); err != nil || len(dels) != 0 {
				t.Fatalf("second DeleteExpired = %+v, %v; want nothing", dels, err)
			}
			saveFails(t, s, ev, storage.ErrExpired, storage.ErrDeleted)
		}},
		{"DeleteExpired removes what expires at or before the given time", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			now := time.Now()
			soon := a.Event(t, 1, past(), nostr.Tags{expiration(now.Unix() + 600)}, "soon")
			edge := a.Event(t, 30443, past(), nostr.Tags{{"d", "kp"}, expiration(now.Unix() + 3600)}, "at the edge")
			later := a.Event(t, 1, past(), nostr.Tags{expiration(now.Unix() + 3601)}, "later")
			never := a.Event(t, 1, past(), nil, "never")
			mustSaveAll(t, s, soon, edge, later, never)
			dels, err := s.DeleteExpired(testContext(t), time.Unix(now.Unix()+3600, 0))
			if err != nil {
				t.Fatalf("DeleteExpired: %v", err)
			}
			equalDeletions(t, "DeleteExpired", dels, []storage.Deletion{deletion(soon, storage.ReasonExpired), deletion(edge, storage.ReasonExpired)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(later, never))
		}},
	}
}
