package storage

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nbd-wtf/go-nostr"
)

// ErrNotIndexed: a filter names something no backend keeps an index for,
// so serving it would mean scanning a table. Query and Count refuse such a
// filter instead of running it; the relay refuses it when the filter
// arrives ("invalid:"). Always returned as *NotIndexedError.
var ErrNotIndexed = errors.New("filter cannot be served from an index")

// NotIndexedError is the ErrNotIndexed failure: Tag is the filter's tag
// name that is not indexed.
type NotIndexedError struct {
	Tag string
}

func (e *NotIndexedError) Error() string {
	return fmt.Sprintf("tag filter %.32q is not supported: only single-letter tag names (a-z, A-Z) are indexed", "#"+e.Tag)
}

// Unwrap makes errors.Is(err, ErrNotIndexed) hold.
func (e *NotIndexedError) Unwrap() error { return ErrNotIndexed }

// Indexable is the one rule for which filters a Store serves: every filter
// it accepts runs on an index in every backend, never on a scan of a whole
// table. Each field has one: ids (primary key), authors, kinds,
// since/until (created_at), and "#x" tag filters on single-letter names x,
// the only tag names NIP-01 lets a filter address and the only ones
// backends index (so an event's other tags, however many, cost no index
// rows). A filter with none of these reads the created_at index newest
// first and stops at its limit. So the only filters refused are those
// naming a tag that is not one letter of a-z or A-Z: there is no index to
// serve them. Query and Count fail with its error, which says why.
func Indexable(f nostr.Filter) error {
	var bad []string
	for name := range f.Tags {
		if !IndexedTagName(name) {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	// The same filter always gets the same answer.
	return &NotIndexedError{Tag: slices.Min(bad)}
}

// IndexedTagName reports whether backends index tags named name: a single
// letter a-z or A-Z, as NIP-01 filters address them ("#x").
func IndexedTagName(name string) bool {
	if len(name) != 1 {
		return false
	}
	c := name[0]
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
