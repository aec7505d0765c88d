package server

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// The index matches exactly like nostr.Filter.Matches: random filters and
// events over small alphabets (so that values collide often), with empty
// lists, several tag names, duplicate event tags and time bounds; filters
// removed from the index stop matching.
func TestFilterIndexMatchesLikeNostr(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(n)) }
	list := func(prefix string, n int) []string {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []string{} // matches nothing
		}
		var out []string
		for range 1 + rng.IntN(3) {
			out = append(out, pick(prefix, n))
		}
		return out
	}
	randFilter := func() nostr.Filter {
		f := nostr.Filter{IDs: list("id", 6), Authors: list("pk", 4)}
		if rng.IntN(2) == 0 {
			f.Kinds = []int{rng.IntN(3), rng.IntN(3)}
		} else if rng.IntN(8) == 0 {
			f.Kinds = []int{}
		}
		if rng.IntN(2) == 0 {
			f.Tags = nostr.TagMap{}
			for _, name := range []string{"t", "p", "xyz"} {
				if vs := list(name, 4); vs != nil || rng.IntN(3) == 0 {
					f.Tags[name] = vs
				}
			}
		}
		if rng.IntN(3) == 0 {
			s := nostr.Timestamp(rng.IntN(10))
			f.Since = &s
		}
		if rng.IntN(3) == 0 {
			u := nostr.Timestamp(rng.IntN(10))
			f.Until = &u
		}
		return f
	}
	randEvent := func() *nostr.Event {
		ev := &nostr.Event{ID: pick("id", 6), PubKey: pick("pk", 4), Kind: rng.IntN(3), CreatedAt: nostr.Timestamp(rng.IntN(10))}
		for range rng.IntN(6) {
			name := []string{"t", "p", "xyz", "e"}[rng.IntN(4)]
			if rng.IntN(6) == 0 {
				ev.Tags = append(ev.Tags, nostr.Tag{name}) // no value
				continue
			}
			ev.Tags = append(ev.Tags, nostr.Tag{name, pick(name, 4)})
		}
		return ev
	}

	idx := newFilterIndex()
	var filters []nostr.Filter
	var compiled []*compiledFilter
	for i := range 300 {
		f := randFilter()
		cf := compileFilter(&subscription{id: fmt.Sprint(i)}, f)
		idx.add(cf)
		filters = append(filters, f)
		compiled = append(compiled, cf)
	}
	check := func(round string) {
		for range 2000 {
			ev := randEvent()
			got := map[*compiledFilter]bool{}
			for _, cf := range idx.match(ev, nil) {
				if got[cf] {
					t.Fatalf("%s: filter %s matched twice", round, cf.sub.id)
				}
				got[cf] = true
			}
			for i, f := range filters {
				if compiled[i] == nil {
					continue
				}
				if want := f.Matches(ev); got[compiled[i]] != want {
					t.Fatalf("%s: filter %+v tags %v vs event %+v: index says %v, Matches says %v",
						round, f, f.Tags, ev, got[compiled[i]], want)
				}
			}
		}
	}
	check("all filters")
	for i := 0; i < len(compiled); i += 2 {
		idx.remove(compiled[i])
		compiled[i] = nil
	}
	check("half removed")
	for i := range compiled {
		if compiled[i] != nil {
			idx.remove(compiled[i])
		}
	}
	if len(idx.byID)+len(idx.byAuthor)+len(idx.byTag)+len(idx.byKind)+len(idx.wildcard) != 0 {
		t.Fatal("entries left after every filter was removed")
	}
}

// A filter's values count once each, and a filter without values counts
// one, so even empty filters are capped.
func TestFilterValues(t *testing.T) {
	f := nostr.Filter{IDs: []string{"a", "b"}, Authors: []string{"c"}, Kinds: []int{1, 2, 3}, Tags: nostr.TagMap{"t": {"x", "y"}, "p": {"z"}}}
	if got := filterValues(f); got != 9 {
		t.Fatalf("filterValues = %d, want 9", got)
	}
	if got := filterValues(nostr.Filter{}); got != 1 {
		t.Fatalf("empty filter counts %d, want 1", got)
	}
}

// BenchmarkMatchNonMatching measures the index against hostile
// subscriptions: each has two filters holding 50 "#t" values and 50
// authors, none of which the event carries. The event carries 2,000 "t"
// tags (the most an event may) or 10. With no subscription the index still
// holds one "#t" filter, so every tag is looked up: the difference to it is
// what the subscriptions cost (issue 14 goal: at most 20 µs per event per
// 1,000 non-matching subscriptions).
func BenchmarkMatchNonMatching(b *testing.B) {
	for _, tags := range []int{10, 2000} {
		for _, subs := range []int{0, 1000, 6400} {
			b.Run(fmt.Sprintf("tags=%d/subs=%d", tags, subs), func(b *testing.B) {
				idx := newFilterIndex()
				idx.add(compileFilter(&subscription{id: "one"}, nostr.Filter{Tags: nostr.TagMap{"t": {"unrelated"}}}))
				for i := range subs {
					sub := &subscription{id: fmt.Sprint(i)}
					for j := range 2 {
						f := nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"t": make([]string, 0, 50)}}
						for k := range 50 {
							f.Tags["t"] = append(f.Tags["t"], fmt.Sprintf("sub%d-%d-%d", i, j, k))
							f.Authors = append(f.Authors, fmt.Sprintf("%064d", i*100+j*50+k))
						}
						idx.add(compileFilter(sub, f))
					}
				}
				ev := &nostr.Event{ID: fmt.Sprintf("%064x", 1), PubKey: fmt.Sprintf("%064x", 2), Kind: 1}
				for k := range tags {
					ev.Tags = append(ev.Tags, nostr.Tag{"t", fmt.Sprint("popular-", k)})
				}
				var out []*compiledFilter
				for b.Loop() {
					out = idx.match(ev, out[:0])
				}
				if len(out) != 0 {
					b.Fatalf("%d matches, want none", len(out))
				}
			})
		}
	}
}

func TestRestrictWraps(t *testing.T) {
	me, other := "me", "other"
	wraps := nostr.Filter{Kinds: []int{kindGiftWrap}}
	mixed := nostr.Filter{Kinds: []int{1, kindGiftWrap}}
	toOther := nostr.Filter{Kinds: []int{kindGiftWrap}, Tags: nostr.TagMap{"p": {other}}}
	tests := []struct {
		name     string
		in       nostr.Filters
		authed   string
		want     nostr.Filters
		needAuth bool
	}{
		{"only wraps, no AUTH", nostr.Filters{wraps}, "", nil, true},
		{"only wraps, several filters, no AUTH", nostr.Filters{wraps, toOther}, "", nil, true},
		{"wraps and notes, no AUTH: wraps dropped", nostr.Filters{wraps, {Kinds: []int{1}}}, "", nostr.Filters{{Kinds: []int{1}}}, false},
		{"mixed kinds stay (filtered as sent)", nostr.Filters{mixed}, "", nostr.Filters{mixed}, false},
		{"own wraps", nostr.Filters{wraps}, me, nostr.Filters{{Kinds: []int{kindGiftWrap}, Tags: nostr.TagMap{"p": {me}}}}, false},
		{"someone else's wraps", nostr.Filters{toOther}, me, nostr.Filters{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, needAuth := restrictWraps(tt.in, tt.authed)
			if needAuth != tt.needAuth || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("restrictWraps = %v, %v; want %v, %v", got, needAuth, tt.want, tt.needAuth)
			}
		})
	}
	if toOther.Tags["p"][0] != other {
		t.Fatal("restrictWraps changed its input")
	}
}

func TestCountParts(t *testing.T) {
	me := "me"
	own := nostr.Filter{Kinds: []int{kindGiftWrap}, Tags: nostr.TagMap{"p": {me}}}
	tests := []struct {
		name        string
		f           nostr.Filter
		authed      string
		plus, minus []nostr.Filter
	}{
		{"no wraps asked", nostr.Filter{Kinds: []int{1}}, "", []nostr.Filter{{Kinds: []int{1}}}, nil},
		{"only wraps, no AUTH", nostr.Filter{Kinds: []int{kindGiftWrap}}, "", nil, nil},
		{"only wraps", nostr.Filter{Kinds: []int{kindGiftWrap}}, me, []nostr.Filter{own}, nil},
		{"wraps among kinds", nostr.Filter{Kinds: []int{1, kindGiftWrap}}, me, []nostr.Filter{own, {Kinds: []int{1}}}, nil},
		{"any kind", nostr.Filter{}, me, []nostr.Filter{own, {}}, []nostr.Filter{{Kinds: []int{kindGiftWrap}}}},
		{"any kind, no AUTH", nostr.Filter{}, "", []nostr.Filter{{}}, []nostr.Filter{{Kinds: []int{kindGiftWrap}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plus, minus := countParts(tt.f, tt.authed)
			if fmt.Sprint(plus) != fmt.Sprint(tt.plus) || fmt.Sprint(minus) != fmt.Sprint(tt.minus) {
				t.Fatalf("countParts = %v - %v; want %v - %v", plus, minus, tt.plus, tt.minus)
			}
		})
	}
}

func TestMayReadWrap(t *testing.T) {
	wrap := &nostr.Event{Kind: kindGiftWrap, Tags: nostr.Tags{{"p", "me"}, {"p"}}}
	if !mayReadWrap(wrap, "me") || mayReadWrap(wrap, "") || mayReadWrap(wrap, "other") {
		t.Fatal("mayReadWrap does not follow the p tag")
	}
	if !slices.Equal(wrap.Tags[0], nostr.Tag{"p", "me"}) {
		t.Fatal("mayReadWrap changed the event")
	}
}
