package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

func banCases() []testCase {
	return []testCase{
		{"SaveKeyPackage, Ban and BannedPubKeys on a closed store return ErrClosed", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			ctx := testContext(t)
			ev := a.Event(t, 30443, past(), nostr.Tags{{"d", "device"}}, "after close")
			if _, err := s.SaveKeyPackage(ctx, ev, capped(newRef())); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("SaveKeyPackage after Close = %v, want ErrClosed", err)
			}
			if _, err := s.Ban(ctx, a.PubKey); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("Ban after Close = %v, want ErrClosed", err)
			}
			if _, err := s.BannedPubKeys(ctx); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("BannedPubKeys after Close = %v, want ErrClosed", err)
			}
		}},
		{"Ban deletes and tombstones the author's events and refuses new ones", func(t *testing.T, open Opener) {
			s, other := open(t), open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			note := a.Event(t, 1, base, nil, "note")
			kp := a.Event(t, 30443, base, nostr.Tags{{"d", "device"}}, "key package")
			keep := b.Event(t, 1, base, nil, "other author")
			wrapToA := giftWrap(t, a, base)
			mustSaveAll(t, s, note, keep, wrapToA)
			mustSaveKP(t, s, kp, kpFor(newRef()))

			dels, err := s.Ban(testContext(t), a.PubKey)
			if err != nil {
				t.Fatalf("Ban: %v", err)
			}
			equalDeletions(t, "Ban", dels, []storage.Deletion{deletion(note, storage.ReasonBanned), deletion(kp, storage.ReasonBanned)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(keep, wrapToA))

			for _, h := range []storage.Store{s, other} {
				saveFails(t, h, a.Event(t, 1, base+100, nil, "after the ban"), storage.ErrBanned)
				saveFails(t, h, note, storage.ErrBanned, storage.ErrDeleted)
				saveKPFails(t, h, a.Event(t, 30443, base+100, nostr.Tags{{"d", "new"}}, "after the ban"), kpFor(newRef()), storage.ErrBanned)
				saveKPFails(t, h, a.Event(t, 443, base+100, nil, "after the ban"), kpFor(newRef()), storage.ErrBanned)
				saveFails(t, h, a.Event(t, 5, base+100, nostr.Tags{{"e", note.ID}}, ""), storage.ErrBanned)
			}
			mustSave(t, s, b.Event(t, 1, base+100, nil, "others still post"))
		}},
		{"BannedPubKeys lists the banned authors; banning twice is harmless", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			ctx := testContext(t)
			if got, err := s.BannedPubKeys(ctx); err != nil || len(got) != 0 {
				t.Fatalf("BannedPubKeys before any ban = %v, %v; want none", got, err)
			}
			note := a.Event(t, 1, past(), nil, "note")
			mustSave(t, s, note)
			for i := range 2 {
				dels, err := s.Ban(ctx, a.PubKey)
				if err != nil {
					t.Fatalf("Ban #%d: %v", i+1, err)
				}
				want := []storage.Deletion{}
				if i == 0 {
					want = append(want, deletion(note, storage.ReasonBanned))
				}
				equalDeletions(t, fmt.Sprintf("Ban #%d", i+1), dels, want)
			}
			if _, err := s.Ban(ctx, b.PubKey); err != nil {
				t.Fatalf("Ban(author with no events): %v", err)
			}
			got, err := s.BannedPubKeys(ctx)
			if err != nil {
				t.Fatalf("BannedPubKeys: %v", err)
			}
			slices.Sort(got)
			want := []string{a.PubKey, b.PubKey}
			slices.Sort(want)
			equalIDs(t, "BannedPubKeys", got, want)
			saveFails(t, s, b.Event(t, 1, past(), nil, "banned before posting"), storage.ErrBanned)
		}},
	}
}
