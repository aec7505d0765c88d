package storetest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

func savingCases() []testCase {
	return []testCase{
		{"a saved event reads back with every field intact", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			content := "quote \" backslash \\ slash / newline \n tab \t cr \r <html> & \u00e9t\u00e9 \u4e2d\u6587 \U0001F407 \u2028 \u0001 {\"json\":[1]}"
			tags := nostr.Tags{
				{"t", "caf\u00e9 \U0001F407"},
				{"e", strings.Repeat("ab", 32), "wss://relay.example/?a=1&b=\"2\"", "reply"},
				{"x"},
				{"empty", ""},
				{"esc", "line\nbreak \\ \"quoted\" \u0002"},
			}
			ev := a.Event(t, 1, past(), tags, content)
			res := mustSave(t, s, ev)
			if res.Seq != 0 || len(res.Deleted) != 0 {
				t.Fatalf("Save result = %+v, want zero", res)
			}
			got := query(t, s, nostr.Filter{IDs: []string{ev.ID}})
			if len(got) != 1 {
				t.Fatalf("Query by id returned %d events, want 1", len(got))
			}
			g := got[0]
			if g.ID != ev.ID || g.PubKey != ev.PubKey || g.CreatedAt != ev.CreatedAt || g.Kind != ev.Kind ||
				g.Content != ev.Content || g.Sig != ev.Sig || !slices.EqualFunc(g.Tags, ev.Tags, slices.Equal) {
				t.Fatalf("read back\n%#v\nwant\n%#v", g, ev)
			}
			if !g.CheckID() {
				t.Fatal("read-back event has a wrong id")
			}
			if ok, err := g.CheckSignature(); !ok || err != nil {
				t.Fatalf("read-back event signature: ok=%v err=%v", ok, err)
			}
		}},
		{"saving a stored event again fails with ErrDuplicate", func(t *testing.T, open Opener) {
			s := open(t)
			ev := NewAuthor(t).Event(t, 1, past(), nil, "once")
			mustSave(t, s, ev)
			saveFails(t, s, ev, storage.ErrDuplicate)
			if n := count(t, s, nostr.Filter{}); n != 1 {
				t.Fatalf("Count = %d after a duplicate, want 1", n)
			}
		}},
		{"a second handle sees what the first saved", func(t *testing.T, open Opener) {
			s1, s2 := open(t), open(t)
			ev := NewAuthor(t).Event(t, 1, past(), nil, "shared")
			mustSave(t, s1, ev)
			equalIDs(t, "second handle", queryIDs(t, s2, nostr.Filter{}), ids(ev))
			saveFails(t, s2, ev, storage.ErrDuplicate)
		}},
		{"Ping succeeds on an open store", func(t *testing.T, open Opener) {
			if err := open(t).Ping(testContext(t)); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}},
	}
}

func filterCases() []testCase {
	return []testCase{
		{"queries follow NIP-01 filter semantics", testFilters},
		{"Keys reads KeyPackages and other events together, oldest first", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			note := a.Event(t, 1, base+2, nil, "note")
			kp := a.Event(t, 30443, base+1, nostr.Tags{{"d", "device"}}, "kp")
			legacy := a.Event(t, 443, base+2, nil, "legacy")
			mustSave(t, s, note)
			mustSaveKP(t, s, kp, kpFor(newRef()))
			mustSaveKP(t, s, legacy, kpFor(newRef()))
			all := []*nostr.Event{note, kp, legacy}
			for _, f := range []nostr.Filter{
				{},
				{Authors: []string{a.PubKey}},
				{Kinds: []int{1, 443}},
				{Kinds: []int{30443}, Tags: nostr.TagMap{"d": {"device"}}},
				{Limit: 2},
			} {
				equalIDs(t, fmt.Sprintf("Keys(%v)", f), keyIDs(t, s, f), keysReference(all, f))
			}
		}},
		{"results come newest first with ties broken by lowest id", func(t *testing.T, open Opener) {
			s := open(t)
			a, b := NewAuthor(t), NewAuthor(t)
			base := past()
			var evs []*nostr.Event
			for i := range 12 {
				au := a
				if i%2 == 1 {
					au = b
				}
				// Four timestamps, three events each: most neighbours tie.
				evs = append(evs, au.Event(t, 1, base+nostr.Timestamp(i%4), nil, fmt.Sprintf("tie %d", i)))
			}
			mustSaveAll(t, s, evs...)
			equalIDs(t, "order", queryIDs(t, s, nostr.Filter{}), ordered(evs...))
			equalIDs(t, "limit inside a tie", queryIDs(t, s, nostr.Filter{Limit: 5}), ordered(evs...)[:5])
		}},
	}
}

// testFilters saves one data set and checks many filters against it, both
// against go-nostr's Filter.Matches (the reference for NIP-01 matching) and,
// for the cases that matter most, against ids written out by hand.
func testFilters(t *testing.T, open Opener) {
	s := open(t)
	a, b, c := NewAuthor(t), NewAuthor(t), NewAuthor(t)
	x, y, z, w := strings.Repeat("1a", 32), strings.Repeat("2b", 32), strings.Repeat("3c", 32), strings.Repeat("4d", 32)
	base := past()
	at := func(d int) nostr.Timestamp { return base + nostr.Timestamp(d) }
	future := nostr.Timestamp(base + 30*24*3600)

	e1 := a.Event(t, 1, at(0), nostr.Tags{{"p", x}, {"t", "nostr"}}, "e1")
	e2 := a.Event(t, 1, at(10), nostr.Tags{{"e", y}, {"t", "go"}}, "e2")
	e3 := b.Event(t, 7, at(10), nostr.Tags{{"e", y}, {"p", x}}, "+")
	e4 := b.Event(t, 445, at(20), nostr.Tags{{"h", x}}, "group")
	e5 := c.Event(t, 1, at(30), nostr.Tags{{"h", z}, {"p", x}}, "e5")
	e6 := c.Event(t, 30023, at(40), nostr.Tags{{"d", "art"}, {"t", "go"}, {"t", "nostr"}}, "article")
	e7 := a.Event(t, 1, at(40), nil, "e7")
	e8 := b.Event(t, 1, at(5), nostr.Tags{{"t", "go"}, {"p", w}}, "e8")
	e9 := c.Event(t, 7, at(50), nostr.Tags{{"e", y, "wss://r.example", "reply"}, {"P", x}}, "-")
	e10 := a.Event(t, 1, at(20), nostr.Tags{{"expiration", strconv.FormatInt(int64(future), 10)}}, "expires later")
	e11 := b.Event(t, 1, at(25), nostr.Tags{{"t", "tie"}}, "e11")
	e12 := c.Event(t, 1, at(25), nostr.Tags{{"t", "tie"}}, "e12")
	e13 := a.Event(t, 1, at(25), nostr.Tags{{"t", "tie"}}, "e13")
	all := []*nostr.Event{e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13}
	mustSaveAll(t, s, all...)

	ts := func(d int) *nostr.Timestamp { v := at(d); return &v }
	tests := []struct {
		name string
		f    nostr.Filter
		want []*nostr.Event // checked in addition to the reference when not nil
	}{
		{"an empty filter matches every event", nostr.Filter{}, all},
		{"ids select exactly those events", nostr.Filter{IDs: []string{e1.ID, e5.ID}}, []*nostr.Event{e1, e5}},
		{"an id that is not stored matches nothing", nostr.Filter{IDs: []string{strings.Repeat("0", 64)}}, []*nostr.Event{}},
		{"an empty ids list matches nothing", nostr.Filter{IDs: []string{}}, []*nostr.Event{}},
		{"one author", nostr.Filter{Authors: []string{b.PubKey}}, []*nostr.Event{e3, e4, e8, e11}},
		{"several authors", nostr.Filter{Authors: []string{a.PubKey, c.PubKey}}, nil},
		{"one kind", nostr.Filter{Kinds: []int{7}}, []*nostr.Event{e3, e9}},
		{"several kinds", nostr.Filter{Kinds: []int{7, 445, 30023}}, []*nostr.Event{e3, e4, e6, e9}},
		{"since is inclusive", nostr.Filter{Since: ts(40)}, []*nostr.Event{e6, e7, e9}},
		{"until is inclusive", nostr.Filter{Until: ts(5)}, []*nostr.Event{e1, e8}},
		{"since equal to until selects that second", nostr.Filter{Since: ts(10), Until: ts(10)}, []*nostr.Event{e2, e3}},
		{"since after until matches nothing", nostr.Filter{Since: ts(30), Until: ts(20)}, []*nostr.Event{}},
		{"limit keeps the newest", nostr.Filter{Limit: 1}, []*nostr.Event{e9}},
		{"limit keeps the newest, ties by lowest id", nostr.Filter{Limit: 2}, nil},
		{"limit cuts inside a tie by lowest id", nostr.Filter{Limit: 5}, nil},
		{"limit larger than the matches returns all of them", nostr.Filter{Kinds: []int{7}, Limit: 100}, []*nostr.Event{e3, e9}},
		{"#p matches only p tags", nostr.Filter{Tags: nostr.TagMap{"p": {x}}}, []*nostr.Event{e1, e3, e5}},
		{"#h matches only h tags, not another tag holding the value", nostr.Filter{Tags: nostr.TagMap{"h": {x}}}, []*nostr.Event{e4}},
		{"tag names are case sensitive", nostr.Filter{Tags: nostr.TagMap{"P": {x}}}, []*nostr.Event{e9}},
		{"#e matches the second element of longer tags", nostr.Filter{Tags: nostr.TagMap{"e": {y}}}, []*nostr.Event{e2, e3, e9}},
		{"several values of one tag are OR", nostr.Filter{Tags: nostr.TagMap{"t": {"go", "nostr"}}}, []*nostr.Event{e1, e2, e6, e8}},
		{"several tag names are AND", nostr.Filter{Tags: nostr.TagMap{"t": {"nostr"}, "p": {x}}}, []*nostr.Event{e1}},
		{"AND across names, OR within values", nostr.Filter{Tags: nostr.TagMap{"t": {"go", "nostr", "tie"}, "p": {x, w}}}, []*nostr.Event{e1, e8}},
		{"#d matches addressable events", nostr.Filter{Tags: nostr.TagMap{"d": {"art"}}}, []*nostr.Event{e6}},
		{"a tag value nobody used matches nothing", nostr.Filter{Tags: nostr.TagMap{"p": {"nobody"}}}, []*nostr.Event{}},
		{"a tag name nobody used matches nothing", nostr.Filter{Tags: nostr.TagMap{"q": {x}}}, []*nostr.Event{}},
		{"an empty tag value list matches nothing", nostr.Filter{Tags: nostr.TagMap{"p": {}}}, []*nostr.Event{}},
		{"an event with a future expiration is served", nostr.Filter{IDs: []string{e10.ID}}, []*nostr.Event{e10}},
		{"authors, kinds, time range and tag combine", nostr.Filter{
			Authors: []string{a.PubKey, b.PubKey}, Kinds: []int{1, 7}, Since: ts(5), Until: ts(25),
			Tags: nostr.TagMap{"t": {"go", "tie"}},
		}, []*nostr.Event{e2, e8, e11, e13}},
		{"ids combine with other fields", nostr.Filter{IDs: []string{e1.ID, e2.ID, e3.ID}, Kinds: []int{1}, Limit: 1}, []*nostr.Event{e2}},
		{"limit zero with LimitZero yields nothing", nostr.Filter{LimitZero: true}, []*nostr.Event{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := queryIDs(t, s, tt.f)
			ref := reference(all, tt.f)
			equalIDs(t, "Query against the reference", got, ref)
			if tt.want != nil {
				equalIDs(t, "Query against the written-out ids", got, ordered(tt.want...))
			}
			noLimit := tt.f
			noLimit.Limit, noLimit.LimitZero = 0, false
			equalIDs(t, "Keys against the reference", keyIDs(t, s, tt.f), keysReference(all, tt.f))
			if n, want := count(t, s, tt.f), int64(len(reference(all, noLimit))); n != want {
				t.Fatalf("Count = %d, want %d (Query's matches without the limit)", n, want)
			}
		})
	}
}

// keysReference is what Keys yields for f over evs: the matches oldest
// first, ties by lowest id, the first f.Limit of them (LimitZero ignored).
func keysReference(evs []*nostr.Event, f nostr.Filter) []string {
	var m []*nostr.Event
	for _, ev := range evs {
		if f.Matches(ev) {
			m = append(m, ev)
		}
	}
	slices.SortFunc(m, func(a, b *nostr.Event) int {
		if a.CreatedAt != b.CreatedAt {
			return int(a.CreatedAt - b.CreatedAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
	out := ids(m...)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// reference applies f to evs with go-nostr's matcher and the NIP-01 order and
// limit rules.
func reference(evs []*nostr.Event, f nostr.Filter) []string {
	if f.LimitZero && f.Limit == 0 {
		return []string{}
	}
	var m []*nostr.Event
	for _, ev := range evs {
		if f.Matches(ev) {
			m = append(m, ev)
		}
	}
	out := ordered(m...)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}
