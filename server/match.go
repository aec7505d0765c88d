package server

import (
	"github.com/nbd-wtf/go-nostr"
)

// The live-matching index (DESIGN.md "Who may read what, and what every
// request costs"): built when a REQ arrives, it finds the filters an event
// matches without walking every filter, or any filter value by value.
//
// A filter's ids, authors and tag values ("driver" dimensions) are all
// entered in the index, one entry per value, each saying which dimension of
// which filter the value belongs to. An event looks up its own id, pubkey
// and tag values; every entry found marks that dimension of that filter
// satisfied, and a filter whose every driver dimension is satisfied is a
// candidate, finally checked for kinds and since/until. A filter without
// driver dimensions is entered under each of its kinds, or, with no kinds,
// in the wildcard set. Matching an event therefore costs one lookup per id,
// pubkey and tag of the event plus one step per value of a filter that the
// event actually carries, however many filters there are and however many
// values they hold. The semantics are nostr.Filter.Matches'.

// compiledFilter is one filter of one subscription. Its ids, authors and
// tag values live in the index only; kinds are checked from a set.
type compiledFilter struct {
	sub     *subscription
	ids     []string // nil: any
	authors []string
	kinds   map[int]struct{} // nil: any
	tags    []tagDim
	since   nostr.Timestamp
	until   nostr.Timestamp
	// never is set when a constraint is an empty list: nothing matches.
	never  bool
	driver int // driver dimensions: ids, authors, then each tag name

	// Matching scratch, touched only by the dispatcher goroutine.
	stamp    uint64
	hits     int
	dimStamp []uint64
}

type tagDim struct {
	name   string
	values []string
}

const (
	dimIDs     = 0
	dimAuthors = 1
	dimTags    = 2 // dimension of tags[i] is dimTags+i
)

func compileFilter(sub *subscription, f nostr.Filter) *compiledFilter {
	cf := &compiledFilter{sub: sub}
	if f.IDs != nil {
		cf.ids = f.IDs
		cf.never = cf.never || len(f.IDs) == 0
		cf.driver++
	}
	if f.Authors != nil {
		cf.authors = f.Authors
		cf.never = cf.never || len(f.Authors) == 0
		cf.driver++
	}
	if f.Kinds != nil {
		cf.kinds = make(map[int]struct{}, len(f.Kinds))
		for _, k := range f.Kinds {
			cf.kinds[k] = struct{}{}
		}
		cf.never = cf.never || len(f.Kinds) == 0
	}
	for name, vs := range f.Tags {
		if vs == nil {
			continue
		}
		cf.tags = append(cf.tags, tagDim{name: name, values: vs})
		cf.never = cf.never || len(vs) == 0
		cf.driver++
	}
	if f.Since != nil {
		cf.since = *f.Since
	} else {
		cf.since = -1 << 62
	}
	if f.Until != nil {
		cf.until = *f.Until
	} else {
		cf.until = 1 << 62
	}
	cf.dimStamp = make([]uint64, dimTags+len(cf.tags))
	return cf
}

// finalMatch checks what the index does not: kinds and since/until.
func (cf *compiledFilter) finalMatch(ev *nostr.Event) bool {
	if cf.kinds != nil {
		if _, ok := cf.kinds[ev.Kind]; !ok {
			return false
		}
	}
	return ev.CreatedAt >= cf.since && ev.CreatedAt <= cf.until
}

// bucket is the set of filters entered under one value, held by value in
// the index's maps (which dimension of a filter the value belongs to
// follows from the map it is in). Most values are asked for by one filter,
// kept inline: an allocation per value would cost memory and garbage
// collection work hundreds of thousands of times over.
type bucket struct {
	first *compiledFilter
	more  *bucketMore
}

// bucketMore holds a value's other filters.
type bucketMore struct {
	filters map[*compiledFilter]struct{}
	stamp   uint64 // last match that visited it, so duplicate tags visit once
}

func (b *bucket) add(cf *compiledFilter) {
	switch {
	case b.first == cf:
	case b.first == nil && !b.has(cf):
		b.first = cf
	default:
		if b.more == nil {
			b.more = &bucketMore{filters: map[*compiledFilter]struct{}{}}
		}
		b.more.filters[cf] = struct{}{}
	}
}

func (b *bucket) has(cf *compiledFilter) bool {
	if b.more == nil {
		return false
	}
	_, ok := b.more.filters[cf]
	return ok
}

// remove takes cf out; it reports whether the bucket is empty then.
func (b *bucket) remove(cf *compiledFilter) bool {
	if b.first == cf {
		b.first = nil
	} else if b.more != nil {
		delete(b.more.filters, cf)
	}
	if b.more != nil && len(b.more.filters) == 0 {
		b.more = nil
	}
	return b.first == nil && b.more == nil
}

// tagDimension is the dimension of cf's tag name.
func (cf *compiledFilter) tagDimension(name string) int {
	for i, t := range cf.tags {
		if t.name == name {
			return dimTags + i
		}
	}
	return -1 // not reached: cf is entered only under its own tag names
}

type tagKey struct{ name, value string }

// filterIndex is the index; the registry guards it.
type filterIndex struct {
	byID     map[string]bucket
	byAuthor map[string]bucket
	byTag    map[string]map[string]bucket // tag name, then value
	byKind   map[int]map[*compiledFilter]struct{}
	wildcard map[*compiledFilter]struct{}
	gen      uint64
}

func newFilterIndex() *filterIndex {
	return &filterIndex{
		byID:     map[string]bucket{},
		byAuthor: map[string]bucket{},
		byTag:    map[string]map[string]bucket{},
		byKind:   map[int]map[*compiledFilter]struct{}{},
		wildcard: map[*compiledFilter]struct{}{},
	}
}

func addEntry(m map[string]bucket, k string, cf *compiledFilter) {
	b := m[k]
	b.add(cf)
	m[k] = b
}

func removeEntry(m map[string]bucket, k string, cf *compiledFilter) {
	b, ok := m[k]
	switch {
	case !ok:
	case b.remove(cf):
		delete(m, k)
	default:
		m[k] = b
	}
}

// visit calls fn for every value under which cf is entered.
func (cf *compiledFilter) visit(id, author func(string), tag func(tagKey), kind func(int), wildcard func()) {
	switch {
	case cf.never:
	case cf.driver == 0 && cf.kinds != nil:
		for k := range cf.kinds {
			kind(k)
		}
	case cf.driver == 0:
		wildcard()
	default:
		for _, v := range cf.ids {
			id(v)
		}
		for _, v := range cf.authors {
			author(v)
		}
		for _, t := range cf.tags {
			for _, v := range t.values {
				tag(tagKey{t.name, v})
			}
		}
	}
}

func (x *filterIndex) add(cf *compiledFilter) {
	cf.visit(
		func(v string) { addEntry(x.byID, v, cf) },
		func(v string) { addEntry(x.byAuthor, v, cf) },
		func(k tagKey) {
			m := x.byTag[k.name]
			if m == nil {
				m = map[string]bucket{}
				x.byTag[k.name] = m
			}
			addEntry(m, k.value, cf)
		},
		func(k int) {
			s := x.byKind[k]
			if s == nil {
				s = map[*compiledFilter]struct{}{}
				x.byKind[k] = s
			}
			s[cf] = struct{}{}
		},
		func() { x.wildcard[cf] = struct{}{} },
	)
}

func (x *filterIndex) remove(cf *compiledFilter) {
	cf.visit(
		func(v string) { removeEntry(x.byID, v, cf) },
		func(v string) { removeEntry(x.byAuthor, v, cf) },
		func(k tagKey) {
			if m := x.byTag[k.name]; m != nil {
				removeEntry(m, k.value, cf)
				if len(m) == 0 {
					delete(x.byTag, k.name)
				}
			}
		},
		func(k int) {
			if s := x.byKind[k]; s != nil {
				delete(s, cf)
				if len(s) == 0 {
					delete(x.byKind, k)
				}
			}
		},
		func() { delete(x.wildcard, cf) },
	)
}

// match appends to out the filters ev matches. Only one goroutine may call
// it at a time (it uses the filters' scratch fields), under the registry's
// read lock.
func (x *filterIndex) match(ev *nostr.Event, out []*compiledFilter) []*compiledFilter {
	x.gen++
	gen := x.gen
	mark := func(cf *compiledFilter, dim int) {
		if cf.stamp != gen {
			cf.stamp, cf.hits = gen, 0
		}
		if cf.dimStamp[dim] == gen {
			return
		}
		cf.dimStamp[dim] = gen
		if cf.hits++; cf.hits == cf.driver && cf.finalMatch(ev) {
			out = append(out, cf)
		}
	}
	// hit marks the filters under one value: of dimension dim, or, for a
	// tag value (dim < 0), of their dimension for tag name.
	hit := func(b bucket, dim int, name string) {
		if b.first != nil {
			if dim >= 0 {
				mark(b.first, dim)
			} else {
				mark(b.first, b.first.tagDimension(name))
			}
		}
		if b.more == nil || b.more.stamp == gen {
			return
		}
		b.more.stamp = gen
		for cf := range b.more.filters {
			if dim >= 0 {
				mark(cf, dim)
			} else {
				mark(cf, cf.tagDimension(name))
			}
		}
	}
	hit(x.byID[ev.ID], dimIDs, "")
	hit(x.byAuthor[ev.PubKey], dimAuthors, "")
	if len(x.byTag) > 0 {
		// Events repeat tag names (2,000 "t" tags): look each name up once
		// per run of it.
		var name string
		var values map[string]bucket
		looked := false
		for _, tag := range ev.Tags {
			if len(tag) < 2 {
				continue
			}
			if !looked || tag[0] != name {
				name, values, looked = tag[0], x.byTag[tag[0]], true
			}
			if values != nil {
				hit(values[tag[1]], -1, name)
			}
		}
	}
	for cf := range x.byKind[ev.Kind] {
		if cf.finalMatch(ev) {
			out = append(out, cf)
		}
	}
	for cf := range x.wildcard {
		if cf.finalMatch(ev) {
			out = append(out, cf)
		}
	}
	return out
}

// filterValues is what a filter counts against the filter-value caps: its
// ids, authors, kinds and tag values, and at least one.
func filterValues(f nostr.Filter) int {
	n := len(f.IDs) + len(f.Authors) + len(f.Kinds)
	for _, vs := range f.Tags {
		n += len(vs)
	}
	return max(n, 1)
}
