package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestKeyPackageTableQueries checks that KeyPackages, kept in a table of
// their own with tag rows of their own, answer tag filters and merge with other
// events in Query order, limits and counts.
func TestKeyPackageTableQueries(t *testing.T) {
	s := open(t, testsvc.Postgres(t).URL)
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	base := nostr.Now() - 100
	kp := storage.KeyPackage{NotAfter: time.Now().Add(time.Hour)}
	save := func(ev *nostr.Event, isKP bool) *nostr.Event {
		var err error
		if isKP {
			_, err = s.SaveKeyPackage(ctx, ev, kp)
		} else {
			_, err = s.Save(ctx, ev)
		}
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	slot := save(a.Event(t, 30443, base+4, nostr.Tags{{"d", "s1"}, {"i", "ref1"}}, "kp 1"), true)
	legacy := save(a.Event(t, 443, base+2, nostr.Tags{{"i", "ref2"}}, "kp 2"), true)
	plain := save(a.Event(t, 30443, base+5, nostr.Tags{{"d", "s2"}}, "kp saved with Save"), false)
	note := save(a.Event(t, 1, base+3, nostr.Tags{{"d", "s1"}, {"i", "ref1"}}, "note with the same tags"), false)
	later := save(a.Event(t, 1, base+6, nil, "newest"), false)
	// Carries the searched values under other names or as a prefix: the
	// tag index (keypackage_tags, migration 7) matches name and value
	// exactly.
	decoy := save(a.Event(t, 443, base+1, nostr.Tags{{"t", "s1"}, {"i", "ref1x"}}, "decoy"), true)

	cases := []struct {
		name string
		f    nostr.Filter
		want []*nostr.Event
	}{
		{"everything, merged newest first", nostr.Filter{}, []*nostr.Event{later, plain, slot, note, legacy, decoy}},
		{"limit across both tables", nostr.Filter{Limit: 3}, []*nostr.Event{later, plain, slot}},
		{"#d over both tables", nostr.Filter{Tags: nostr.TagMap{"d": {"s1"}}}, []*nostr.Event{slot, note}},
		{"#d on KeyPackages only", nostr.Filter{Kinds: []int{30443}, Tags: nostr.TagMap{"d": {"s1", "s2"}}}, []*nostr.Event{plain, slot}},
		{"#i with a limit", nostr.Filter{Tags: nostr.TagMap{"i": {"ref1", "ref2"}}, Limit: 2}, []*nostr.Event{slot, note}},
		{"#i no match", nostr.Filter{Kinds: []int{443, 30443}, Tags: nostr.TagMap{"i": {"none"}}}, nil},
		{"kinds 443 and 1", nostr.Filter{Kinds: []int{443, 1}}, []*nostr.Event{later, note, legacy, decoy}},
		{"authors and until", nostr.Filter{Authors: []string{a.PubKey}, Until: ptr(base + 4)}, []*nostr.Event{slot, note, legacy, decoy}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for ev, err := range s.Query(ctx, tc.f) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ev.ID)
			}
			var want []string
			for _, ev := range tc.want {
				want = append(want, ev.ID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("Query ids %v, want %v", got, want)
			}
			tc.f.Limit = 0
			n, err := s.Count(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name != "limit across both tables" && tc.name != "#i with a limit" && n != int64(len(want)) {
				t.Errorf("Count = %d, want %d", n, len(want))
			}
		})
	}
}

// TestTwinsRaceOnTwoHandles saves two events carrying the same KeyPackage
// at once on two handles, many times: twins coexist, so both remain.
// (Twins racing a deletion: storetest "a twin saved while its KeyPackage is
// deleted on another handle is never left behind".)
func TestTwinsRaceOnTwoHandles(t *testing.T) {
	pg := testsvc.Postgres(t)
	h1, h2 := open(t, pg.URL), open(t, pg.URL)
	ctx := context.Background()
	base := nostr.Now() - 100
	for i := range 30 {
		a := storetest.NewAuthor(t)
		kp := storage.KeyPackage{Ref: fmt.Sprintf("%064x", i+1), NotAfter: time.Now().Add(time.Hour)}
		x := a.Event(t, 443, base, nil, "legacy twin")
		y := a.Event(t, 30443, base, nostr.Tags{{"d", "slot"}}, "slot twin")
		var errX, errY error
		var wg sync.WaitGroup
		wg.Go(func() { _, errX = h1.SaveKeyPackage(ctx, x, kp) })
		wg.Go(func() { _, errY = h2.SaveKeyPackage(ctx, y, kp) })
		wg.Wait()
		for _, err := range []error{errX, errY} {
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if n, err := h1.Count(ctx, nostr.Filter{Authors: []string{a.PubKey}}); err != nil || n != 2 {
			t.Fatalf("round %d: %d events carry the KeyPackage (%v), want 2", i, n, err)
		}
	}
}
