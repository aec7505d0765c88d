package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

// FilterShapes are the filter shapes a relay sends to Query and Count (the
// ones storage.Indexable accepts), alone and combined, named. Backends'
// tests run each through their query planner, Query with the relay's
// clamp applied (Clamped).
func FilterShapes() map[string]nostr.Filter {
	pk, id := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	since, until := nostr.Timestamp(1_700_000_000), nostr.Timestamp(1_800_000_000)
	return map[string]nostr.Filter{
		"nothing":                         {},
		"limit":                           {Limit: 500},
		"ids":                             {IDs: []string{id, pk}},
		"authors":                         {Authors: []string{pk, id}},
		"kinds":                           {Kinds: []int{1, 7}},
		"KeyPackage kinds":                {Kinds: []int{443, 30443}, Limit: 20},
		"one tag":                         {Tags: nostr.TagMap{"p": {pk}}},
		"two tags":                        {Tags: nostr.TagMap{"p": {pk}, "t": {"nostr", "go"}}},
		"upper-case tag":                  {Tags: nostr.TagMap{"P": {pk}}},
		"since":                           {Since: &since},
		"until":                           {Until: &until},
		"since and until":                 {Since: &since, Until: &until, Limit: 20},
		"ids and kinds":                   {IDs: []string{id}, Kinds: []int{1}},
		"authors and kinds":               {Authors: []string{pk}, Kinds: []int{30443, 443}, Limit: 10},
		"authors and since":               {Authors: []string{pk}, Since: &since},
		"kinds and since":                 {Kinds: []int{1}, Since: &since, Limit: 100},
		"kinds and tag":                   {Kinds: []int{445}, Tags: nostr.TagMap{"h": {pk}}},
		"KeyPackage kinds and tag":        {Kinds: []int{443, 30443}, Tags: nostr.TagMap{"i": {id}}},
		"authors and tag":                 {Authors: []string{pk}, Tags: nostr.TagMap{"d": {"x"}}},
		"kinds, tags, authors, time span": {Kinds: []int{1, 7}, Authors: []string{pk}, Tags: nostr.TagMap{"e": {id}, "t": {"x"}}, Since: &since, Until: &until, Limit: 5},
	}
}

// Clamped is f as the relay queries it: a limit of at most 500 (its
// --max-limit default), so a Query never asks for a whole table.
func Clamped(f nostr.Filter) nostr.Filter {
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 500
	}
	return f
}

// Unconditioned reports whether f has no condition at all (only a limit):
// the one shape whose query walks the created_at index in order up to its
// limit, and whose count reads every event.
func Unconditioned(f nostr.Filter) bool {
	return f.IDs == nil && f.Authors == nil && f.Kinds == nil && f.Tags == nil && f.Since == nil && f.Until == nil
}

// Exercise calls every method of s along every path the contract names
// (saves of each kind of event and their refusals, replacement, NIP-09,
// NIP-62, gift wraps, KeyPackage twins, the slot cap and eviction,
// sequencing and commit slots, expiry and retention sweeps, bans, hand-out
// claims, and a Query and Count of each of FilterShapes), so a backend's
// test can watch the statements it runs. It fails t when a call fails in a
// way the contract does not allow.
func Exercise(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := testContext(t)
	a, b, c, kpa := NewAuthor(t), NewAuthor(t), NewAuthor(t), NewAuthor(t)
	base := past()
	at := func(d int) nostr.Timestamp { return base + nostr.Timestamp(d) }

	// Plain events, replaceable and addressable slots, expiry.
	note := a.Event(t, 1, at(0), nostr.Tags{{"p", b.PubKey}, {"t", "go"}, {"client", "x"}, {"T", "up"}}, "note")
	meta1 := a.Event(t, 0, at(1), nil, "{}")
	meta2 := a.Event(t, 0, at(2), nil, `{"name":"a"}`)
	art := a.Event(t, 30023, at(3), nostr.Tags{{"d", "art"}}, "article")
	soon := a.Event(t, 1, at(4), nostr.Tags{expiration(time.Now().Add(time.Hour).Unix())}, "expires")
	mustSaveAll(t, s, note, meta1, meta2, art, soon)
	saveFails(t, s, note, storage.ErrDuplicate)
	saveFails(t, s, meta1, storage.ErrDeleted, storage.ErrReplaced)

	// NIP-09 by id and by address, and a gift wrap deleted by its recipient.
	victim := a.Event(t, 1, at(5), nil, "to delete")
	mustSave(t, s, victim)
	mustSave(t, s, a.Event(t, 5, at(6), nostr.Tags{{"e", victim.ID}, {"a", address(30023, a.PubKey, "art")}}, ""))
	saveFails(t, s, victim, storage.ErrDeleted)
	wrap := c.Event(t, 1059, at(7), nostr.Tags{{"p", b.PubKey}}, "sealed")
	mustSave(t, s, wrap)
	mustSave(t, s, b.Event(t, 5, at(8), nostr.Tags{{"e", wrap.ID}}, ""))
	saveFails(t, s, b.Event(t, 5, at(9), nostr.Tags{{"e", note.ID}}, ""), storage.ErrNotAuthor)

	// A request to vanish: the author's events and wraps addressed to it.
	mustSaveAll(t, s, c.Event(t, 1, at(10), nil, "c"), a.Event(t, 1059, at(10), nostr.Tags{{"p", c.PubKey}}, "to c"))
	mustSave(t, s, c.Event(t, 62, at(11), nostr.Tags{{"relay", "ALL_RELAYS"}}, ""))
	saveFails(t, s, c.Event(t, 1, at(10), nil, "before"), storage.ErrDeleted)

	// KeyPackages: twins, a slot replaced, the cap evicting, a deletion
	// burying twins.
	ref1, ref2 := newRef(), newRef()
	kp1 := kpa.Event(t, 30443, at(12), nostr.Tags{{"d", "slot"}, {"i", ref1}}, "kp one")
	kp1twin := kpa.Event(t, 443, at(12), nostr.Tags{{"i", ref1}}, "kp one")
	mustSaveKP(t, s, kp1, kpFor(ref1))
	mustSaveKP(t, s, kp1twin, kpFor(ref1))
	kp2 := kpa.Event(t, 30443, at(13), nostr.Tags{{"d", "slot"}, {"i", ref2}}, "kp two")
	mustSaveKP(t, s, kp2, kpFor(ref2))
	old := kpa.Event(t, 443, daysAgo(30), nil, "old")
	mustSaveKP(t, s, old, storage.KeyPackage{Ref: newRef(), NotAfter: time.Now().Add(time.Hour)})
	evicting := storage.KeyPackage{Ref: newRef(), NotAfter: time.Now().Add(time.Hour), SlotCap: 2, EvictAfter: 24 * time.Hour}
	mustSaveKP(t, s, kpa.Event(t, 443, at(14), nil, "evicts"), evicting)
	saveKPFails(t, s, kpa.Event(t, 443, at(15), nil, "capped"), storage.KeyPackage{Ref: newRef(), NotAfter: time.Now().Add(time.Hour), SlotCap: 1, EvictAfter: 24 * time.Hour}, storage.ErrSlotCap)
	mustSave(t, s, kpa.Event(t, 5, at(16), nostr.Tags{{"e", kp2.ID}}, ""))
	saveKPFails(t, s, kpa.Event(t, 443, at(17), nil, "kp two"), kpFor(ref2), storage.ErrDeleted)

	// Sequencing, the group log and commit slots.
	h := strings.Repeat("9a", 32)
	for i := range 5 {
		mustSave(t, s, GroupEvent(t, NewAuthor(t), h, at(20+i)))
	}
	_ = groupLog(t, s, h, 2, 2)
	_ = groupLog(t, s, h, 0, 0)
	_ = lastSeq(t, s, h)
	slot, other := NewSlot(), NewSlot()
	holder := GroupEvent(t, NewAuthor(t), h, at(30))
	mustClaim(t, s, storage.SlotClaim{H: h, Slot: slot, Commit: holder})
	mustClaim(t, s, storage.SlotClaim{H: h, Slot: slot, Commit: holder})
	loser := GroupEvent(t, NewAuthor(t), h, at(31))
	claimTaken(t, s, storage.SlotClaim{H: h, Slot: slot, Commit: loser}, holder.ID)
	saveTaken(t, s, loser, holder.ID)
	claimLost(t, s, storage.SlotClaim{H: h, Slot: other, Commit: loser}, slot, holder.ID)
	claimHolds(t, s, storage.SlotClaim{H: h, Slot: other, Commit: holder}, slot)
	replacement := GroupEvent(t, NewAuthor(t), h, at(32))
	mustClaim(t, s, storage.SlotClaim{H: h, Slot: slot, Commit: replacement, Release: holder.ID})
	mustClaim(t, s, storage.SlotClaim{H: h, Slot: slot, Commit: replacement, Release: holder.ID})
	_ = groupLog(t, s, h, 0, 0)

	// Every filter shape, then real values of the data above.
	for _, f := range FilterShapes() {
		_ = query(t, s, Clamped(f))
		_ = count(t, s, f)
	}
	for _, f := range []nostr.Filter{
		{Authors: []string{a.PubKey}},
		{Tags: nostr.TagMap{"p": {b.PubKey}}},
		{Kinds: []int{443, 30443}, Authors: []string{kpa.PubKey}},
		{Kinds: []int{30443}, Tags: nostr.TagMap{"d": {"slot"}}},
		{Tags: nostr.TagMap{"h": {h}}, Kinds: []int{445}, Limit: 3},
	} {
		_ = query(t, s, Clamped(f))
		_ = count(t, s, f)
	}

	// Hand-out claims.
	cl := s.HandoutClaims()
	cands := candidates(3)
	mustHandOut(t, cl, a.PubKey, cands, time.Now().Add(-time.Second))
	mustHandOut(t, cl, b.PubKey, cands, time.Now().Add(time.Hour))
	exp, err := cl.Expired(ctx, time.Now())
	if err != nil {
		t.Fatalf("Expired: %v", err)
	}
	refs := make([]string, len(exp))
	for i, e := range exp {
		refs[i] = e.Ref
	}
	if err := cl.Release(ctx, refs); err != nil {
		t.Fatalf("Release: %v", err)
	}

	// Sweeps, Delete, Ban.
	if _, err := s.DeleteExpired(ctx, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatalf("DeleteExpired: %v", err)
	}
	if _, err := s.Delete(ctx, []string{note.ID, strings.Repeat("0", 64)}, storage.ReasonAdmin); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Ban(ctx, kpa.PubKey); err != nil {
		t.Fatalf("Ban: %v", err)
	}
	saveFails(t, s, kpa.Event(t, 1, at(40), nil, "banned"), storage.ErrBanned)
	if _, err := s.BannedPubKeys(ctx); err != nil {
		t.Fatalf("BannedPubKeys: %v", err)
	}
	if _, err := s.DeleteGroupEvents(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("DeleteGroupEvents: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"client": {"x"}}}); !errors.Is(err, storage.ErrNotIndexed) {
		t.Fatalf("Count on a multi-letter tag = %v, want ErrNotIndexed", err)
	}
}
