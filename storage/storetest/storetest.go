// Package storetest owns the behavioural conformance suite that every
// storage.Store backend runs unchanged: saving and querying with full NIP-01
// filter semantics, replaceable and addressable slots, NIP-09 deletion
// requests, tombstones, NIP-40 expiration, kind 445 sequencing, ordered
// group reads and group retention, commit slots, streaming and closing,
// KeyPackage twins, lifetimes and slot caps, gift wrap deletion by the
// recipient, NIP-62 requests to vanish, bans, and the NIP-86 records of
// AdminState. A backend's test calls Run with a function that creates a
// fresh, empty database.
package storetest

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// Opener opens a new handle on one database (as another relay instance
// would); handles are closed by t.Cleanup.
type Opener func(t *testing.T) storage.Store

// Run runs every conformance case; newDB creates a fresh, empty database for
// each subtest and returns its Opener.
func Run(t *testing.T, newDB func(t *testing.T) Opener) {
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"saving", savingCases()},
		{"filters", filterCases()},
		{"filters run on indexes", indexCases()},
		{"replaceable and addressable", replaceableCases()},
		{"deletion requests", deletionRequestCases()},
		{"Delete", deleteCases()},
		{"expiration", expirationCases()},
		{"sequencing", append(sequencingCases(), groupLogCases()...)},
		{"commit slots", commitSlotCases()},
		{"streaming and closing", streamingCases()},
		{"KeyPackages", keyPackageCases()},
		{"KeyPackage twins", twinCases()},
		{"hand-out claims", storeClaimCases()},
		{"gift wrap deletion", giftWrapDeletionCases()},
		{"requests to vanish", vanishCases()},
		{"bans", banCases()},
		{"secrets", secretCases()},
		{"administration", adminCases()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					c.run(t, newDB(t))
				})
			}
		})
	}
}

// testCase is one conformance case; it gets the Opener of a fresh database.
type testCase struct {
	name string
	run  func(t *testing.T, open Opener)
}

// Author is a test identity that signs real events.
type Author struct {
	Secret string // hex secret key
	PubKey string // hex x-only public key
}

// NewAuthor returns an author with a freshly generated key.
func NewAuthor(t testing.TB) Author {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatalf("derive public key: %v", err)
	}
	return Author{Secret: sk, PubKey: pk}
}

// Event builds an event with these fields and signs it, so it carries a valid
// id and signature.
func (a Author) Event(t testing.TB, kind int, createdAt nostr.Timestamp, tags nostr.Tags, content string) *nostr.Event {
	t.Helper()
	if tags == nil {
		tags = nostr.Tags{}
	}
	ev := &nostr.Event{PubKey: a.PubKey, CreatedAt: createdAt, Kind: kind, Tags: tags, Content: content}
	if err := ev.Sign(a.Secret); err != nil {
		t.Fatalf("sign event: %v", err)
	}
	return ev
}

// NewestFirst orders events as Query must: created_at descending, ties by
// lowest id.
func NewestFirst(a, b *nostr.Event) int {
	if c := cmp.Compare(b.CreatedAt, a.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// timeout bounds every store call of the suite, so a deadlocked backend fails
// instead of hanging.
const timeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// past is a base timestamp an hour ago, so offsets of minutes stay in the past.
func past() nostr.Timestamp {
	return nostr.Timestamp(time.Now().Add(-time.Hour).Unix())
}

func mustSave(t *testing.T, s storage.Store, ev *nostr.Event) storage.Result {
	t.Helper()
	res, err := s.Save(testContext(t), ev)
	if err != nil {
		t.Fatalf("Save(kind %d, %s): %v", ev.Kind, ev.ID, err)
	}
	return res
}

func mustSaveAll(t *testing.T, s storage.Store, evs ...*nostr.Event) {
	t.Helper()
	for _, ev := range evs {
		mustSave(t, s, ev)
	}
}

// saveFails asserts that Save refuses ev with one of want (the contract allows
// more than one answer in a few places).
func saveFails(t *testing.T, s storage.Store, ev *nostr.Event, want ...error) storage.Result {
	t.Helper()
	res, err := s.Save(testContext(t), ev)
	for _, w := range want {
		if errors.Is(err, w) {
			return res
		}
	}
	t.Fatalf("Save(kind %d, %s) = %v, want %v", ev.Kind, ev.ID, err, want)
	return res
}

// query collects every event Query yields for f.
func query(t *testing.T, s storage.Store, f nostr.Filter) []*nostr.Event {
	t.Helper()
	var out []*nostr.Event
	for ev, err := range s.Query(testContext(t), f) {
		if err != nil {
			t.Fatalf("Query(%v): %v", f, err)
		}
		out = append(out, ev)
	}
	return out
}

func queryIDs(t *testing.T, s storage.Store, f nostr.Filter) []string {
	t.Helper()
	return ids(query(t, s, f)...)
}

// keyIDs reads Keys(f) as hex ids in the order yielded, checking that each
// key's created_at is the stored event's.
func keyIDs(t *testing.T, s storage.Store, f nostr.Filter) []string {
	t.Helper()
	var out []string
	for k, err := range s.Keys(testContext(t), f) {
		if err != nil {
			t.Fatalf("Keys(%v): %v", f, err)
		}
		id := hex.EncodeToString(k.ID[:])
		evs := query(t, s, nostr.Filter{IDs: []string{id}})
		if len(evs) != 1 || int64(evs[0].CreatedAt) != k.CreatedAt {
			t.Fatalf("Keys(%v) yielded %s at %d, which Query does not return at that time", f, id, k.CreatedAt)
		}
		out = append(out, id)
	}
	return out
}

func count(t *testing.T, s storage.Store, f nostr.Filter) int64 {
	t.Helper()
	n, err := s.Count(testContext(t), f)
	if err != nil {
		t.Fatalf("Count(%v): %v", f, err)
	}
	return n
}

// stored reports whether the store serves the event with this id.
func stored(t *testing.T, s storage.Store, id string) bool {
	t.Helper()
	return len(queryIDs(t, s, nostr.Filter{IDs: []string{id}})) == 1
}

func ids(evs ...*nostr.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// ordered returns the ids of evs in Query order.
func ordered(evs ...*nostr.Event) []string {
	evs = slices.Clone(evs)
	slices.SortFunc(evs, NewestFirst)
	return ids(evs...)
}

func equalIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got ids\n%v\nwant\n%v", what, got, want)
	}
}

// equalDeletions compares deletions regardless of order.
func equalDeletions(t *testing.T, what string, got, want []storage.Deletion) {
	t.Helper()
	byID := func(a, b storage.Deletion) int { return cmp.Compare(a.ID, b.ID) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got deletions\n%+v\nwant\n%+v", what, got, want)
	}
}

func deletion(ev *nostr.Event, reason storage.Reason) storage.Deletion {
	return storage.Deletion{ID: ev.ID, Kind: ev.Kind, PubKey: ev.PubKey, Reason: reason}
}
