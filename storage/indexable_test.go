package storage

import (
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

func TestIndexable(t *testing.T) {
	pk := strings.Repeat("ab", 32)
	since := nostr.Timestamp(1)
	for _, tt := range []struct {
		name string
		f    nostr.Filter
		ok   bool
		bad  string // the tag named in the refusal
	}{
		{"no condition", nostr.Filter{}, true, ""},
		{"ids, authors, kinds, time span", nostr.Filter{IDs: []string{pk}, Authors: []string{pk}, Kinds: []int{1}, Since: &since, Limit: 3}, true, ""},
		{"lower-case letter tag", nostr.Filter{Tags: nostr.TagMap{"p": {pk}}}, true, ""},
		{"upper-case letter tag", nostr.Filter{Tags: nostr.TagMap{"P": {pk}, "z": {"x"}, "A": {"y"}}}, true, ""},
		{"multi-letter tag", nostr.Filter{Tags: nostr.TagMap{"client": {"x"}}}, false, "client"},
		{"multi-letter tag beside letter tags", nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"t": {"x"}, "alt": {"y"}}}, false, "alt"},
		{"digit", nostr.Filter{Tags: nostr.TagMap{"1": {"x"}}}, false, "1"},
		{"punctuation", nostr.Filter{Tags: nostr.TagMap{"-": {"x"}}}, false, "-"},
		{"non-ASCII letter", nostr.Filter{Tags: nostr.TagMap{"é": {"x"}}}, false, "é"},
		// "#" alone never reaches a filter from JSON (go-nostr needs a
		// name after '#'), but a filter built in code may carry it.
		{"empty name", nostr.Filter{Tags: nostr.TagMap{"": {"x"}}}, false, ""},
		{"the smallest of several bad names", nostr.Filter{Tags: nostr.TagMap{"zz": {"x"}, "bb": {"y"}, "p": {"z"}}}, false, "bb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Indexable(tt.f)
			if tt.ok {
				if err != nil {
					t.Fatalf("Indexable = %v, want nil", err)
				}
				return
			}
			var ne *NotIndexedError
			if !errors.As(err, &ne) || !errors.Is(err, ErrNotIndexed) || ne.Tag != tt.bad {
				t.Fatalf("Indexable = %v, want a NotIndexedError for %q", err, tt.bad)
			}
			if !strings.Contains(err.Error(), "#"+tt.bad) || !strings.Contains(err.Error(), "single-letter") {
				t.Fatalf("message %q does not name the tag and the rule", err)
			}
		})
	}
}
