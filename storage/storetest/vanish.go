package storetest

import (
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// giftWrap signs a kind 1059 for recipient with a throwaway key, as NIP-59
// senders do.
func giftWrap(t *testing.T, recipient Author, at nostr.Timestamp) *nostr.Event {
	return NewAuthor(t).Event(t, 1059, at, nostr.Tags{{"p", recipient.PubKey}}, "sealed")
}

func giftWrapDeletionCases() []testCase {
	return []testCase{
		{"a kind 5 by a gift wrap's p recipient deletes it", func(t *testing.T, open Opener) {
			s := open(t)
			recipient := NewAuthor(t)
			base := past()
			wrap := giftWrap(t, recipient, base)
			keep := giftWrap(t, recipient, base)
			mustSaveAll(t, s, wrap, keep)
			req := recipient.Event(t, 5, base+1, nostr.Tags{{"e", wrap.ID}, {"k", "1059"}}, "")
			res := mustSave(t, s, req)
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(wrap, storage.ReasonDeletionRequest)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(req, keep))
			saveFails(t, s, wrap, storage.ErrDeleted)
		}},
		{"a kind 5 by neither a gift wrap's author nor its recipient fails with ErrNotAuthor", func(t *testing.T, open Opener) {
			s := open(t)
			recipient, stranger := NewAuthor(t), NewAuthor(t)
			base := past()
			wrap := giftWrap(t, recipient, base)
			// A p tag names a recipient only on a gift wrap.
			mention := NewAuthor(t).Event(t, 1, base, nostr.Tags{{"p", recipient.PubKey}}, "mentions the recipient")
			mustSaveAll(t, s, wrap, mention)
			for _, tt := range []struct {
				name   string
				signer Author
				target *nostr.Event
			}{
				{"stranger, gift wrap", stranger, wrap},
				{"p of a kind 1", recipient, mention},
			} {
				req := tt.signer.Event(t, 5, base+1, nostr.Tags{{"e", tt.target.ID}}, "")
				saveFails(t, s, req, storage.ErrNotAuthor)
				if stored(t, s, req.ID) {
					t.Fatalf("%s: a refused kind 5 was stored", tt.name)
				}
			}
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(wrap, mention))
		}},
	}
}

func vanishCases() []testCase {
	return []testCase{
		{"a kind 62 deletes the author's events and gift wraps to the author up to its created_at", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			note := a.Event(t, 1, base, nil, "note")
			kp := a.Event(t, 30443, base+5, nostr.Tags{{"d", "device"}}, "key package")
			legacy := a.Event(t, 443, base+10, nil, "same second as the request")
			wrapToA := giftWrap(t, a, base)
			wrapSent := a.Event(t, 1059, base, nostr.Tags{{"p", b.PubKey}}, "a wrap a signed")
			newer := a.Event(t, 1, base+20, nil, "newer than the request")
			wrapLater := giftWrap(t, a, base+20)
			other := b.Event(t, 1, base, nil, "other author")
			wrapToB := giftWrap(t, b, base)
			mustSaveAll(t, s, note, kp, legacy, wrapToA, wrapSent, newer, wrapLater, other, wrapToB)

			req := a.Event(t, 62, base+10, nostr.Tags{{"relay", "ALL_RELAYS"}}, "")
			res := mustSave(t, s, req)
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{
				deletion(note, storage.ReasonVanish),
				deletion(kp, storage.ReasonVanish),
				deletion(legacy, storage.ReasonVanish),
				deletion(wrapToA, storage.ReasonVanish),
				deletion(wrapSent, storage.ReasonVanish),
			})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(req, newer, wrapLater, other, wrapToB))

			// Deleted ids stay deleted; the author's events up to the
			// request are refused, later ones are accepted.
			for _, ev := range []*nostr.Event{note, kp, legacy, wrapToA} {
				saveFails(t, s, ev, storage.ErrDeleted)
			}
			saveFails(t, s, a.Event(t, 1, base+10, nil, "dated at the request"), storage.ErrDeleted)
			saveFails(t, s, a.Event(t, 30443, base+3, nostr.Tags{{"d", "device"}}, "dated before"), storage.ErrDeleted)
			saveKPFails(t, s, a.Event(t, 443, base+2, nil, "dated before"), kpFor(newRef()), storage.ErrDeleted)
			after := a.Event(t, 1, base+11, nil, "dated after the request")
			mustSave(t, s, after)
			afterKP := a.Event(t, 30443, base+11, nostr.Tags{{"d", "device"}}, "dated after the request")
			mustSaveKP(t, s, afterKP, kpFor(newRef()))
			equalIDs(t, "author's events", queryIDs(t, s, nostr.Filter{Authors: []string{a.PubKey}}), ordered(req, newer, after, afterKP))
		}},
		{"a kind 62 by an author with nothing stored is stored", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			req := a.Event(t, 62, past(), nostr.Tags{{"relay", "ALL_RELAYS"}}, "")
			if res := mustSave(t, s, req); len(res.Deleted) != 0 {
				t.Fatalf("Result.Deleted = %+v, want none", res.Deleted)
			}
			equalIDs(t, "stored", queryIDs(t, s, nostr.Filter{Kinds: []int{62}}), ids(req))
		}},
	}
}
