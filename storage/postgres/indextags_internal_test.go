package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestIndexTagsMatchesGo: burrow_index_tags (migration 7), which fills
// keypackage_tags from the stored tags, yields exactly the rows
// newSaveArgs gives event_tags for the same tags, so a "#x" filter matches
// KeyPackages as it matches other events.
func TestIndexTagsMatchesGo(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pg.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := storetest.NewAuthor(t)
	long := strings.Repeat("v", 511) + "é"
	for _, tags := range []nostr.Tags{
		{},
		{{"d", "slot"}, {"i", strings.Repeat("ab", 32)}, {"mls_protocol_version", "1.0"}},
		{{"e"}, {"t", ""}, {"T", "upper"}, {"t", "x", "extra", "items"}, {"p", "dup"}, {"p", "dup"}},
		{{"x", long}, {"y", strings.Repeat("w", 512)}, {"z", strings.Repeat("w", 513)}, {"é", "not a letter"}, {"1", "digit"}},
		{{"relays", "wss://a", "wss://b"}, {"t", "\xff\xfe raw bytes"}, {"", "empty name"}, {"q", strings.Repeat("long ", 200)}},
	} {
		ev := a.Event(t, 1, nostr.Now(), tags, "x")
		args, err := newSaveArgs(ev, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for i, n := range args.tagNames {
			want = append(want, n+"\x00"+string(args.tagValues[i]))
		}
		rows, err := s.pool.Query(ctx, `SELECT DISTINCT name, value FROM burrow_index_tags($1)`, encodeTags(tags))
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var n string
			var v []byte
			err := r.Scan(&n, &v)
			return n + "\x00" + string(v), err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("tags %q: burrow_index_tags gives %q, Go gives %q", tags, got, want)
		}
	}
}
