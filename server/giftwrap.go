package server

import (
	"maps"
	"slices"

	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

// Gift wraps are private (DESIGN.md "Who may read what"): a kind 1059 is
// served, stored or live, only to a client authenticated with NIP-42 as a
// pubkey in the wrap's "p" tag. A request that asks only for gift wraps
// needs AUTH first; in other requests, wraps for someone else are left out
// without a word. Writing a wrap needs no AUTH.

const kindGiftWrap = policy.KindGiftWrap

// mayReadWrap reports whether a client authenticated as authed ("" when
// not) may receive the gift wrap ev.
func mayReadWrap(ev *nostr.Event, authed string) bool {
	if authed == "" {
		return false
	}
	for _, tag := range ev.Tags {
		if len(tag) >= 2 && tag[0] == "p" && tag[1] == authed {
			return true
		}
	}
	return false
}

// onlyWraps reports whether f asks for kind 1059 and nothing else.
func onlyWraps(f nostr.Filter) bool {
	return len(f.Kinds) > 0 && !slices.ContainsFunc(f.Kinds, func(k int) bool { return k != kindGiftWrap })
}

// allWraps reports whether every filter asks only for kind 1059.
func allWraps(filters nostr.Filters) bool {
	return len(filters) > 0 && !slices.ContainsFunc(filters, func(f nostr.Filter) bool { return !onlyWraps(f) })
}

// ownWraps narrows a filter for gift wraps to those addressed to authed;
// false when it can match none (no AUTH, or a #p that does not name
// authed). A wrap names one recipient, so #p becomes exactly authed.
func ownWraps(f nostr.Filter, authed string) (nostr.Filter, bool) {
	if authed == "" {
		return f, false
	}
	if ps, ok := f.Tags["p"]; ok && !slices.Contains(ps, authed) {
		return f, false
	}
	f.Kinds = []int{kindGiftWrap}
	f.Tags = maps.Clone(f.Tags)
	if f.Tags == nil {
		f.Tags = nostr.TagMap{}
	}
	f.Tags["p"] = []string{authed}
	return f, true
}

// restrictWraps applies the rule to a REQ's filters: a filter asking only
// for gift wraps is narrowed to the client's own, or dropped; other filters
// stay (their wraps are filtered as they are sent). needAuth reports a
// request that asked only for gift wraps from an unauthenticated client.
func restrictWraps(filters nostr.Filters, authed string) (out nostr.Filters, needAuth bool) {
	if authed == "" && allWraps(filters) {
		return nil, true
	}
	out = make(nostr.Filters, 0, len(filters))
	for _, f := range filters {
		if onlyWraps(f) {
			if f, ok := ownWraps(f, authed); ok {
				out = append(out, f)
			}
			continue
		}
		out = append(out, f)
	}
	return out, false
}

// countParts splits a COUNT filter so that the counts of plus minus the
// counts of minus are the events authed may see: gift wraps only their own.
func countParts(f nostr.Filter, authed string) (plus, minus []nostr.Filter) {
	if f.Kinds != nil && !slices.Contains(f.Kinds, kindGiftWrap) {
		return []nostr.Filter{f}, nil
	}
	if own, ok := ownWraps(f, authed); ok {
		plus = append(plus, own)
	}
	switch {
	case onlyWraps(f):
	case f.Kinds != nil:
		others := f
		others.Kinds = slices.DeleteFunc(slices.Clone(f.Kinds), func(k int) bool { return k == kindGiftWrap })
		plus = append(plus, others)
	default:
		// Any kind: everything, less every wrap, plus one's own wraps.
		wraps := f
		wraps.Kinds = []int{kindGiftWrap}
		plus = append(plus, f)
		minus = append(minus, wraps)
	}
	return plus, minus
}
