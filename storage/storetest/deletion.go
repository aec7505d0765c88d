package storetest

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// address is the NIP-09 "a" value of an addressable or replaceable event.
func address(kind int, pubkey, d string) string {
	return fmt.Sprintf("%d:%s:%s", kind, pubkey, d)
}

func deletionRequestCases() []testCase {
	var cases []testCase
	for _, withK := range []bool{true, false} {
		suffix := " (with a k tag)"
		if !withK {
			suffix = " (without a k tag)"
		}
		kTag := func(kind int) nostr.Tags {
			if !withK {
				return nil
			}
			return nostr.Tags{{"k", strconv.Itoa(kind)}}
		}
		cases = append(cases,
			testCase{"a kind 5 deletes the author's event named by e and is itself stored" + suffix, func(t *testing.T, open Opener) {
				s := open(t)
				a := NewAuthor(t)
				base := past()
				target := a.Event(t, 443, base, nil, "key package")
				keep := a.Event(t, 1, base, nil, "keep")
				mustSaveAll(t, s, target, keep)
				req := a.Event(t, 5, base+1, append(nostr.Tags{{"e", target.ID}}, kTag(443)...), "")
				res := mustSave(t, s, req)
				equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(target, storage.ReasonDeletionRequest)})
				equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(req, keep))
				equalIDs(t, "kind 5 query", queryIDs(t, s, nostr.Filter{Kinds: []int{5}}), ids(req))
				saveFails(t, s, target, storage.ErrDeleted)
			}},
			testCase{"a kind 5 by a deletes versions up to its created_at, a same-second replacement included" + suffix, func(t *testing.T, open Opener) {
				s := open(t)
				a := NewAuthor(t)
				base := past()
				d := nostr.Tags{{"d", "slot"}}
				v1 := a.Event(t, 30443, base, d, "v1")
				v2 := a.Event(t, 30443, base+5, d, "v2, same second as the request")
				mustSave(t, s, v1)
				mustSave(t, s, v2)
				req := a.Event(t, 5, base+5, append(nostr.Tags{{"a", address(30443, a.PubKey, "slot")}}, kTag(30443)...), "")
				res := mustSave(t, s, req)
				equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(v2, storage.ReasonDeletionRequest)})
				equalIDs(t, "slot", queryIDs(t, s, nostr.Filter{Kinds: []int{30443}}), []string{})
				// The request keeps blocking versions up to its created_at.
				saveFails(t, s, a.Event(t, 30443, base+5, d, "late, same second"), storage.ErrDeleted)
				saveFails(t, s, a.Event(t, 30443, base+2, d, "late, older"), storage.ErrDeleted)
				newer := a.Event(t, 30443, base+6, d, "newer than the request")
				mustSave(t, s, newer)
				equalIDs(t, "slot", queryIDs(t, s, nostr.Filter{Kinds: []int{30443}}), ids(newer))
			}},
		)
	}
	cases = append(cases,
		testCase{"a kind 5 by a leaves versions newer than the request", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			v := a.Event(t, 30443, base+10, nostr.Tags{{"d", "slot"}}, "newer")
			mustSave(t, s, v)
			req := a.Event(t, 5, base+5, nostr.Tags{{"a", address(30443, a.PubKey, "slot")}}, "")
			if res := mustSave(t, s, req); len(res.Deleted) != 0 {
				t.Fatalf("Result.Deleted = %+v, want none", res.Deleted)
			}
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(v, req))
		}},
		testCase{"a kind 5 by a deletes a replaceable event by its empty-d address", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			v := a.Event(t, 10051, base, nostr.Tags{{"relay", "wss://r.example"}}, "")
			mustSave(t, s, v)
			req := a.Event(t, 5, base+1, nostr.Tags{{"a", address(10051, a.PubKey, "")}}, "")
			res := mustSave(t, s, req)
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(v, storage.ReasonDeletionRequest)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ids(req))
		}},
		testCase{"a kind 5 leaves other authors' events untouched", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			own := a.Event(t, 1, base, nil, "own")
			foreign := b.Event(t, 1, base, nil, "foreign")
			foreignKP := b.Event(t, 30443, base, nostr.Tags{{"d", "x"}}, "foreign kp")
			mustSaveAll(t, s, own, foreign, foreignKP)
			req := a.Event(t, 5, base+1, nostr.Tags{{"e", own.ID}, {"e", foreign.ID}, {"a", address(30443, b.PubKey, "x")}}, "")
			res := mustSave(t, s, req)
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(own, storage.ReasonDeletionRequest)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(req, foreign, foreignKP))
		}},
		testCase{"a kind 5 naming only other authors' events fails with ErrNotAuthor and stores nothing", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			foreign := b.Event(t, 1, base, nil, "foreign")
			foreignKP := b.Event(t, 30443, base, nostr.Tags{{"d", "x"}}, "foreign kp")
			mustSaveAll(t, s, foreign, foreignKP)
			for _, tags := range []nostr.Tags{
				{{"e", foreign.ID}},
				{{"a", address(30443, b.PubKey, "x")}},
				{{"e", foreign.ID}, {"a", address(30443, b.PubKey, "x")}, {"k", "1"}},
			} {
				req := a.Event(t, 5, base+1, tags, "")
				saveFails(t, s, req, storage.ErrNotAuthor)
				if stored(t, s, req.ID) {
					t.Fatal("a refused kind 5 was stored")
				}
			}
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(foreign, foreignKP))
		}},
		testCase{"a kind 5 naming nothing stored is stored and blocks that id from the same author", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			later := a.Event(t, 1, base, nil, "arrives after its deletion")
			req := a.Event(t, 5, base+1, nostr.Tags{{"e", later.ID}}, "")
			if res := mustSave(t, s, req); len(res.Deleted) != 0 {
				t.Fatalf("Result.Deleted = %+v, want none", res.Deleted)
			}
			saveFails(t, s, later, storage.ErrDeleted)
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ids(req))
		}},
		testCase{"a kind 5 naming another author's unstored event does not block it", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			foreign := b.Event(t, 1, base, nil, "someone else's")
			req := a.Event(t, 5, base+1, nostr.Tags{{"e", foreign.ID}}, "")
			mustSave(t, s, req)
			mustSave(t, s, foreign)
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ordered(req, foreign))
		}},
		testCase{"a kind 5 targeting a kind 5 has no effect", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			target := a.Event(t, 1, base, nil, "deleted")
			mustSave(t, s, target)
			first := a.Event(t, 5, base+1, nostr.Tags{{"e", target.ID}}, "")
			mustSave(t, s, first)
			second := a.Event(t, 5, base+2, nostr.Tags{{"e", first.ID}}, "")
			if res := mustSave(t, s, second); len(res.Deleted) != 0 {
				t.Fatalf("Result.Deleted = %+v, want none", res.Deleted)
			}
			equalIDs(t, "kind 5 events", queryIDs(t, s, nostr.Filter{Kinds: []int{5}}), ordered(first, second))
			saveFails(t, s, target, storage.ErrDeleted)

			// Nor does it block a kind 5 that arrives after it.
			unstored := a.Event(t, 5, base+3, nostr.Tags{{"e", target.ID}}, "")
			mustSave(t, s, a.Event(t, 5, base+4, nostr.Tags{{"e", unstored.ID}}, ""))
			mustSave(t, s, unstored)
		}},
		testCase{"an id deleted by a kind 5 cannot be saved again even after the request is gone", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			target := a.Event(t, 1, base, nil, "deleted")
			mustSave(t, s, target)
			req := a.Event(t, 5, base+1, nostr.Tags{{"e", target.ID}}, "")
			mustSave(t, s, req)
			if _, err := s.Delete(testContext(t), []string{req.ID}, storage.ReasonAdmin); err != nil {
				t.Fatalf("Delete(kind 5): %v", err)
			}
			saveFails(t, s, target, storage.ErrDeleted)
		}},
	)
	return cases
}

func deleteCases() []testCase {
	return []testCase{
		{"Delete removes the events, reports them and tombstones every id", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			x := a.Event(t, 1, base, nil, "x")
			y := b.Event(t, 30443, base, nostr.Tags{{"d", "kp"}}, "y")
			keep := a.Event(t, 1, base, nil, "keep")
			never := a.Event(t, 1, base, nil, "never stored")
			mustSaveAll(t, s, x, y, keep)
			dels, err := s.Delete(testContext(t), []string{x.ID, y.ID, never.ID}, storage.ReasonAdmin)
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			equalDeletions(t, "Delete", dels, []storage.Deletion{deletion(x, storage.ReasonAdmin), deletion(y, storage.ReasonAdmin)})
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ids(keep))
			for _, ev := range []*nostr.Event{x, y, never} {
				saveFails(t, s, ev, storage.ErrDeleted)
			}
			// A tombstone blocks the id only: a new version of the slot is fine.
			mustSave(t, s, b.Event(t, 30443, base+1, nostr.Tags{{"d", "kp"}}, "y2"))
		}},
		{"deleting a missing or already-deleted id is harmless", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			x := a.Event(t, 1, past(), nil, "x")
			keep := a.Event(t, 1, past(), nil, "keep")
			mustSaveAll(t, s, x, keep)
			ctx := testContext(t)
			if _, err := s.Delete(ctx, []string{x.ID}, storage.ReasonAdmin); err != nil {
				t.Fatalf("first Delete: %v", err)
			}
			for _, idList := range [][]string{{x.ID}, {x.ID, x.ID}, nil, {}} {
				dels, err := s.Delete(ctx, idList, storage.ReasonDeletionRequest)
				if err != nil || len(dels) != 0 {
					t.Fatalf("Delete(%v) = %+v, %v; want nothing, nil", idList, dels, err)
				}
			}
			equalIDs(t, "remaining", queryIDs(t, s, nostr.Filter{}), ids(keep))
		}},
	}
}
