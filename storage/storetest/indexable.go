package storetest

import (
	"errors"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// indexCases: every backend applies storage.Indexable itself, so no caller
// can make it scan a table, and indexing only single-letter tag names
// changes nothing a filter can see.
func indexCases() []testCase {
	return []testCase{
		{"a filter on a tag name that is not one letter is refused by Query and Count", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			ev := a.Event(t, 1, past(), nostr.Tags{{"client", "x"}, {"t", "x"}}, "tagged")
			mustSave(t, s, ev)
			for _, f := range []nostr.Filter{
				{Tags: nostr.TagMap{"client": {"x"}}},
				{Authors: []string{a.PubKey}, Kinds: []int{1}, Tags: nostr.TagMap{"t": {"x"}, "client": {"x"}}},
				{Kinds: []int{443, 30443}, Tags: nostr.TagMap{"mls_protocol_version": {"1.0"}}}, // the KeyPackage table too
			} {
				var got []*nostr.Event
				var qerr error
				for e, err := range s.Query(testContext(t), f) {
					if err != nil {
						qerr = err
						break
					}
					got = append(got, e)
				}
				if !errors.Is(qerr, storage.ErrNotIndexed) || len(got) != 0 {
					t.Fatalf("Query(%v) = %d events, %v; want ErrNotIndexed and nothing", f, len(got), qerr)
				}
				if n, err := s.Count(testContext(t), f); !errors.Is(err, storage.ErrNotIndexed) || n != 0 {
					t.Fatalf("Count(%v) = %d, %v; want ErrNotIndexed", f, n, err)
				}
			}
		}},
		{"events keep every tag; letter tags match whatever other tags they carry", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			var tags nostr.Tags
			for i := range 300 {
				tags = append(tags, nostr.Tag{"label", "v" + string(rune('a'+i%26))}, nostr.Tag{"x-" + string(rune('a'+i%26)), "same"})
			}
			tags = append(tags, nostr.Tag{"t", "findme"}, nostr.Tag{"T", "upper"})
			ev := a.Event(t, 1, past(), tags, "many tags")
			kp := a.Event(t, 443, past(), nostr.Tags{{"mls_protocol_version", "1.0"}, {"i", "ref"}, {"relays", "wss://r.example"}}, "kp")
			mustSaveAll(t, s, ev, kp)
			for _, tc := range []struct {
				f    nostr.Filter
				want []string
			}{
				{nostr.Filter{Tags: nostr.TagMap{"t": {"findme"}}}, ids(ev)},
				{nostr.Filter{Tags: nostr.TagMap{"T": {"upper"}}}, ids(ev)},
				{nostr.Filter{Tags: nostr.TagMap{"i": {"ref"}}}, ids(kp)},
				{nostr.Filter{Kinds: []int{443}, Tags: nostr.TagMap{"i": {"ref"}}}, ids(kp)},
				{nostr.Filter{Tags: nostr.TagMap{"t": {"same"}}}, []string{}},
			} {
				equalIDs(t, "query", queryIDs(t, s, tc.f), tc.want)
				if n := count(t, s, tc.f); n != int64(len(tc.want)) {
					t.Fatalf("Count(%v) = %d, want %d", tc.f, n, len(tc.want))
				}
			}
			got := query(t, s, nostr.Filter{IDs: []string{ev.ID}})
			if len(got) != 1 || len(got[0].Tags) != len(tags) || !got[0].CheckID() {
				t.Fatalf("read back %d events; want the event with its %d tags intact", len(got), len(tags))
			}
			if _, err := s.Delete(testContext(t), ids(ev, kp), storage.ReasonAdmin); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			for _, f := range []nostr.Filter{{Tags: nostr.TagMap{"t": {"findme"}}}, {Tags: nostr.TagMap{"i": {"ref"}}}} {
				equalIDs(t, "after Delete", queryIDs(t, s, f), []string{})
			}
		}},
	}
}
