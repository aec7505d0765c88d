package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// slotKind is one kind of replaceable or addressable slot the cases run on.
type slotKind struct {
	name string
	kind int
	tags nostr.Tags // tags that put an event in the slot
}

func slotKinds() []slotKind {
	return []slotKind{
		{"kind 0", 0, nil},
		{"kind 3", 3, nil},
		{"kind 10002", 10002, nostr.Tags{{"r", "wss://relay.example"}}},
		{"kind 30443 with a d tag", 30443, nostr.Tags{{"d", "device-1"}}},
		{"kind 30443 without a d tag", 30443, nil},
	}
}

// slotFilter selects everything stored in the author's slot of this kind.
func (k slotKind) filter(a Author) nostr.Filter {
	f := nostr.Filter{Authors: []string{a.PubKey}, Kinds: []int{k.kind}}
	if d := k.tags.GetD(); d != "" {
		f.Tags = nostr.TagMap{"d": {d}}
	}
	return f
}

// versions signs two versions of one slot at the same created_at and returns
// them with the lower id first.
func (k slotKind) tiedVersions(t *testing.T, a Author, at nostr.Timestamp) (low, high *nostr.Event) {
	v1 := a.Event(t, k.kind, at, k.tags, "tie 1")
	v2 := a.Event(t, k.kind, at, k.tags, "tie 2")
	if v1.ID < v2.ID {
		return v1, v2
	}
	return v2, v1
}

func replaceableCases() []testCase {
	var cases []testCase
	for _, k := range slotKinds() {
		cases = append(cases,
			testCase{k.name + ": a newer version replaces and deletes the older one", func(t *testing.T, open Opener) {
				s := open(t)
				a := NewAuthor(t)
				base := past()
				old := a.Event(t, k.kind, base, k.tags, "old")
				newer := a.Event(t, k.kind, base+1, k.tags, "new")
				mustSave(t, s, old)
				res := mustSave(t, s, newer)
				equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(old, storage.ReasonReplaced)})
				equalIDs(t, "slot", queryIDs(t, s, k.filter(a)), ids(newer))
				if stored(t, s, old.ID) {
					t.Fatal("the replaced version is still served")
				}
				// Gone, not hidden: Delete reports only what it removes.
				dels, err := s.Delete(testContext(t), []string{old.ID}, storage.ReasonAdmin)
				if err != nil || len(dels) != 0 {
					t.Fatalf("Delete(replaced id) = %+v, %v; want nothing removed", dels, err)
				}
			}},
			testCase{k.name + ": an older version submitted later fails with ErrReplaced", func(t *testing.T, open Opener) {
				s := open(t)
				a := NewAuthor(t)
				base := past()
				newer := a.Event(t, k.kind, base+1, k.tags, "new")
				old := a.Event(t, k.kind, base, k.tags, "old")
				mustSave(t, s, newer)
				saveFails(t, s, old, storage.ErrReplaced)
				equalIDs(t, "slot", queryIDs(t, s, k.filter(a)), ids(newer))
			}},
			testCase{k.name + ": at equal created_at the lower id wins", func(t *testing.T, open Opener) {
				s := open(t)
				a := NewAuthor(t)
				low, high := k.tiedVersions(t, a, past())
				mustSave(t, s, high)
				res := mustSave(t, s, low)
				equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(high, storage.ReasonReplaced)})
				saveFails(t, s, high, storage.ErrReplaced, storage.ErrDeleted)
				equalIDs(t, "slot", queryIDs(t, s, k.filter(a)), ids(low))

				low2, high2 := k.tiedVersions(t, a, past()+10)
				mustSave(t, s, low2)
				saveFails(t, s, high2, storage.ErrReplaced)
				equalIDs(t, "slot", queryIDs(t, s, k.filter(a)), ids(low2))
			}},
			testCase{k.name + ": a replaced version cannot be saved again", func(t *testing.T, open Opener) {
				s := open(t)
				a := NewAuthor(t)
				base := past()
				old := a.Event(t, k.kind, base, k.tags, "old")
				mustSave(t, s, old)
				mustSave(t, s, a.Event(t, k.kind, base+1, k.tags, "new"))
				// Either answer is "blocked:"; a backend may tombstone replaced ids.
				saveFails(t, s, old, storage.ErrReplaced, storage.ErrDeleted)
			}},
		)
	}
	cases = append(cases,
		testCase{"slots are per author, per kind and per d value", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			evs := []*nostr.Event{
				a.Event(t, 0, base, nil, "a profile"),
				b.Event(t, 0, base, nil, "b profile"),
				a.Event(t, 3, base, nil, "a contacts"),
				a.Event(t, 10002, base, nil, "a relays"),
				a.Event(t, 30443, base, nostr.Tags{{"d", "one"}}, "kp one"),
				a.Event(t, 30443, base, nostr.Tags{{"d", "two"}}, "kp two"),
				a.Event(t, 30023, base, nostr.Tags{{"d", "one"}}, "article one"),
				b.Event(t, 30443, base, nostr.Tags{{"d", "one"}}, "b kp one"),
			}
			for _, ev := range evs {
				if res := mustSave(t, s, ev); len(res.Deleted) != 0 {
					t.Fatalf("saving %q deleted %+v", ev.Content, res.Deleted)
				}
			}
			equalIDs(t, "all slots", queryIDs(t, s, nostr.Filter{}), ordered(evs...))
		}},
		testCase{"a missing d tag and an empty d value share one slot", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			noD := a.Event(t, 30443, base, nil, "no d")
			emptyD := a.Event(t, 30443, base+1, nostr.Tags{{"d", ""}}, "empty d")
			mustSave(t, s, noD)
			res := mustSave(t, s, emptyD)
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(noD, storage.ReasonReplaced)})
			equalIDs(t, "slot", queryIDs(t, s, nostr.Filter{Kinds: []int{30443}}), ids(emptyD))
		}},
		testCase{"an addressable slot is keyed by the first d value", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			twoDs := a.Event(t, 30443, base, nostr.Tags{{"d", "first"}, {"d", "second"}}, "two d tags")
			second := a.Event(t, 30443, base+1, nostr.Tags{{"d", "second"}}, "second only")
			first := a.Event(t, 30443, base+2, nostr.Tags{{"d", "first"}}, "first only")
			mustSave(t, s, twoDs)
			if res := mustSave(t, s, second); len(res.Deleted) != 0 {
				t.Fatalf("a different d replaced %+v", res.Deleted)
			}
			res := mustSave(t, s, first)
			equalDeletions(t, "Result.Deleted", res.Deleted, []storage.Deletion{deletion(twoDs, storage.ReasonReplaced)})
			equalIDs(t, "slots", queryIDs(t, s, nostr.Filter{Kinds: []int{30443}}), ordered(first, second))
		}},
		testCase{"concurrent writers on two handles leave exactly the winning version", testConcurrentSlot},
	)
	return cases
}

// testConcurrentSlot has 16 goroutines on two handles save 16 versions of one
// slot at once; exactly the winner (newest, then lowest id) must remain, and
// every other version must have been refused or reported deleted.
func testConcurrentSlot(t *testing.T, open Opener) {
	for _, k := range []slotKind{{"replaceable", 10002, nil}, {"addressable", 30443, nostr.Tags{{"d", "race"}}}} {
		t.Run(k.name, func(t *testing.T) {
			handles := []storage.Store{open(t), open(t)}
			a := NewAuthor(t)
			base := past()
			evs := make([]*nostr.Event, 16)
			for i := range evs {
				// Four timestamps: the newest one is shared by four versions.
				evs[i] = a.Event(t, k.kind, base+nostr.Timestamp(i%4), k.tags, fmt.Sprintf("version %d", i))
			}
			winner := ordered(evs...)[0]

			results := make([]storage.Result, len(evs))
			errs := make([]error, len(evs))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, ev := range evs {
				wg.Go(func() {
					<-start
					results[i], errs[i] = handles[i%2].Save(testContext(t), ev)
				})
			}
			close(start)
			wg.Wait()

			gone := map[string]bool{}
			for i, err := range errs {
				switch {
				case err == nil:
					for _, d := range results[i].Deleted {
						if d.Reason != storage.ReasonReplaced {
							t.Errorf("deletion %+v has reason %q, want replaced", d, d.Reason)
						}
						gone[d.ID] = true
					}
				case errors.Is(err, storage.ErrReplaced):
					gone[evs[i].ID] = true
				default:
					t.Errorf("Save(version %d) = %v, want nil or ErrReplaced", i, err)
				}
			}
			if err := errs[slices.IndexFunc(evs, func(ev *nostr.Event) bool { return ev.ID == winner })]; err != nil {
				t.Errorf("the winner was refused: %v", err)
			}
			for _, ev := range evs {
				if ev.ID != winner && !gone[ev.ID] {
					t.Errorf("version %q was neither refused nor reported deleted", ev.Content)
				}
			}
			if gone[winner] {
				t.Error("the winner was reported deleted")
			}
			for _, h := range handles {
				equalIDs(t, "slot", queryIDs(t, h, k.filter(a)), []string{winner})
			}
		})
	}
}

// saveConcurrently saves evs from workers goroutines spread over handles and
// fails the test on the first error.
func saveConcurrently(t *testing.T, handles []storage.Store, workers int, evs []*nostr.Event) []storage.Result {
	t.Helper()
	results := make([]storage.Result, len(evs))
	errs := make([]error, len(evs))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ctx := testContext(t)
			for i := w; i < len(evs); i += workers {
				results[i], errs[i] = handles[w%len(handles)].Save(ctx, evs[i])
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Save(event %d): %v", i, err)
		}
	}
	return results
}
