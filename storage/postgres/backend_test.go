package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestBytesRoundTrip stores strings that text, json and jsonb columns would
// alter or refuse (U+0000, invalid UTF-8, values past the B-tree row limit)
// and checks they come back byte for byte, still match their id, and that
// the long tag value can be queried exactly.
func TestBytesRoundTrip(t *testing.T) {
	s := open(t, testsvc.Postgres(t).URL)
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	long := strings.Repeat("v", 3000)
	longSibling := long[:2999] + "w" // same indexed prefix, different value
	cases := []struct {
		name    string
		tags    nostr.Tags
		content string
		query   nostr.Filter
	}{
		{"NUL in content and tag", nostr.Tags{{"t", "a\x00b"}}, "nul \x00 here", nostr.Filter{Tags: nostr.TagMap{"t": {"a\x00b"}}}},
		{"invalid UTF-8", nostr.Tags{{"t", "\xff\xfe"}}, "bad \xc3\x28 utf8", nostr.Filter{Tags: nostr.TagMap{"t": {"\xff\xfe"}}}},
		{"tag value longer than an index row", nostr.Tags{{"r", long}}, "long", nostr.Filter{Tags: nostr.TagMap{"r": {long}}}},
		{"empty tags and content", nostr.Tags{}, "", nostr.Filter{Kinds: []int{1}, Since: ptr(nostr.Timestamp(997)), Until: ptr(nostr.Timestamp(997))}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := a.Event(t, 1, nostr.Timestamp(1000-i), tc.tags, tc.content)
			if _, err := s.Save(ctx, ev); err != nil {
				t.Fatal(err)
			}
			var got []*nostr.Event
			for e, err := range s.Query(ctx, tc.query) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, e)
			}
			if len(got) == 0 || got[0].ID != ev.ID {
				t.Fatalf("query %v returned %d events, first not %s", tc.query, len(got), ev.ID)
			}
			g := got[0]
			if g.Content != ev.Content || !tagsEqual(g.Tags, ev.Tags) || g.Sig != ev.Sig || g.PubKey != ev.PubKey {
				t.Errorf("event changed on the way through: got %q %q, want %q %q", g.Content, g.Tags, ev.Content, ev.Tags)
			}
			if !g.CheckID() {
				t.Error("stored event no longer hashes to its id")
			}
		})
	}
	// The sibling shares the long value's indexed prefix; it must not match.
	if n, err := s.Count(ctx, nostr.Filter{Tags: nostr.TagMap{"r": {longSibling}}}); err != nil || n != 0 {
		t.Errorf("count of a value sharing the long value's prefix = %d, %v; want 0", n, err)
	}
}

func ptr[T any](v T) *T { return &v }

func tagsEqual(a, b nostr.Tags) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// TestGroupCommitIsolatesAFailingEvent makes the database refuse one event
// (a trigger) among concurrent saves: it fails alone, the others commit.
func TestGroupCommitIsolatesAFailingEvent(t *testing.T) {
	pg := testsvc.Postgres(t)
	s := open(t, pg.URL)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.content = 'poison'::bytea THEN RAISE EXCEPTION 'poisoned event'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison();`); err != nil {
		t.Fatal(err)
	}
	a := storetest.NewAuthor(t)
	base := nostr.Now() - 100
	const n = 64
	evs := make([]*nostr.Event, n)
	for i := range evs {
		content := fmt.Sprintf("fine %d", i)
		if i == n/2 {
			content = "poison"
		}
		evs[i] = a.Event(t, 445, base, nostr.Tags{{"h", "g"}}, content)
	}

	errs := make([]error, n)
	seqs := make([]int64, n)
	var wg sync.WaitGroup
	for i, ev := range evs {
		wg.Go(func() {
			res, err := s.Save(ctx, ev)
			seqs[i], errs[i] = res.Seq, err
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, err := range errs {
		if i == n/2 {
			if err == nil || !strings.Contains(err.Error(), "poisoned event") {
				t.Errorf("poison event: err = %v, want the trigger's error", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("event %d failed with its group: %v", i, err)
		}
		seen[seqs[i]] = true
	}
	for seq := int64(1); seq < n; seq++ {
		if !seen[seq] {
			t.Errorf("seq %d missing: the failed event must not leave a hole (got %v)", seq, seen)
			break
		}
	}
	if c, err := s.Count(ctx, nostr.Filter{Kinds: []int{445}}); err != nil || c != n-1 {
		t.Errorf("stored %d group events (%v), want %d", c, err, n-1)
	}
}

// TestDeletionRacesSave runs a save of an event against its deletion (by a
// kind 5, Delete, Ban or a request to vanish) on two handles, many times:
// whatever the order, the event must end up not stored.
func TestDeletionRacesSave(t *testing.T) {
	pg := testsvc.Postgres(t)
	h1, h2 := open(t, pg.URL), open(t, pg.URL)
	ctx := context.Background()
	base := nostr.Now() - 1000
	for _, how := range []string{"kind 5", "Delete", "Ban", "kind 62"} {
		t.Run(how, func(t *testing.T) {
			for i := range 40 {
				a := storetest.NewAuthor(t)
				target := a.Event(t, 1, base+nostr.Timestamp(i), nil, how+" target")
				var saveErr, delErr error
				var wg sync.WaitGroup
				wg.Go(func() { _, saveErr = h1.Save(ctx, target) })
				wg.Go(func() {
					switch how {
					case "Delete":
						_, delErr = h2.Delete(ctx, []string{target.ID}, storage.ReasonAdmin)
					case "Ban":
						_, delErr = h2.Ban(ctx, a.PubKey)
					case "kind 62":
						_, delErr = h2.Save(ctx, a.Event(t, 62, base+nostr.Timestamp(i)+1, nostr.Tags{{"relay", "ALL_RELAYS"}}, ""))
					default:
						_, delErr = h2.Save(ctx, a.Event(t, 5, base+nostr.Timestamp(i)+1, nostr.Tags{{"e", target.ID}}, ""))
					}
				})
				wg.Wait()
				if delErr != nil {
					t.Fatalf("round %d: deletion: %v", i, delErr)
				}
				if saveErr != nil && !errors.Is(saveErr, storage.ErrDeleted) && !errors.Is(saveErr, storage.ErrBanned) {
					t.Fatalf("round %d: save: %v", i, saveErr)
				}
				if n, err := h1.Count(ctx, nostr.Filter{IDs: []string{target.ID}}); err != nil || n != 0 {
					t.Fatalf("round %d: target stored after its deletion (count %d, %v)", i, n, err)
				}
			}
		})
	}
}

func TestClosedStore(t *testing.T) {
	s := open(t, testsvc.Postgres(t).URL)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev := storetest.NewAuthor(t).Event(t, 1, nostr.Now(), nil, "late")
	_, saveErr := s.Save(ctx, ev)
	_, delErr := s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin)
	_, expErr := s.DeleteExpired(ctx, time.Now())
	_, countErr := s.Count(ctx, nostr.Filter{})
	for name, err := range map[string]error{
		"Save": saveErr, "Delete": delErr, "DeleteExpired": expErr, "Count": countErr,
		"Ping": s.Ping(ctx), "Close": s.Close(),
	} {
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestGroupLog(t *testing.T) {
	ctx := context.Background()
	var clock atomic.Int64 // what the store takes for now
	clock.Store(time.Now().Unix())
	s, err := postgres.Open(ctx, postgres.Config{
		URL: testsvc.Postgres(t).URL,
		Now: func() time.Time { return time.Unix(clock.Load(), 0) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a := storetest.NewAuthor(t)
	base := nostr.Now() - 100
	var g []*nostr.Event
	for i := range 6 {
		tags := nostr.Tags{{"h", "g"}}
		if i == 4 {
			// Expires after it was saved, before the reads below.
			tags = append(tags, nostr.Tag{"expiration", strconv.FormatInt(clock.Load()+5, 10)})
		}
		ev := a.Event(t, 445, base+nostr.Timestamp(i), tags, fmt.Sprintf("g %d", i))
		if _, err := s.Save(ctx, ev); err != nil {
			t.Fatal(err)
		}
		g = append(g, ev)
		other := a.Event(t, 445, base, nostr.Tags{{"h", "other"}}, fmt.Sprintf("other %d", i))
		if _, err := s.Save(ctx, other); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, []string{g[1].ID}, storage.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	clock.Add(10) // seq 5 expires

	for _, tc := range []struct {
		name         string
		after, limit int
		want         []int64
	}{
		{"from the start, holes skipped", 0, 0, []int64{1, 3, 4, 6}},
		{"after a seq", 3, 0, []int64{4, 6}},
		{"limited", 0, 2, []int64{1, 3}},
		{"past the end", 6, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			for se, err := range s.GroupLog(ctx, "g", int64(tc.after), tc.limit) {
				if err != nil {
					t.Fatal(err)
				}
				if se.Event.ID != g[se.Seq-1].ID {
					t.Errorf("seq %d carries %s, want %s", se.Seq, se.Event.ID, g[se.Seq-1].ID)
				}
				got = append(got, se.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("seqs %v, want %v", got, tc.want)
			}
		})
	}
}
