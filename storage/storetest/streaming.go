package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
)

func streamingCases() []testCase {
	return []testCase{
		{"several thousand events stream in order", func(t *testing.T, open Opener) {
			s := open(t)
			const n = 3000
			authors := []Author{NewAuthor(t), NewAuthor(t), NewAuthor(t)}
			base := past()
			evs := make([]*nostr.Event, n)
			for i := range evs {
				// 100 distinct seconds: every second holds 30 ties.
				evs[i] = authors[i%3].Event(t, 1, base+nostr.Timestamp(i%100), nostr.Tags{{"t", "bulk"}}, fmt.Sprintf("bulk %d", i))
			}
			saveConcurrently(t, []storage.Store{s}, 8, evs)
			got := 0
			var prev *nostr.Event
			want := ordered(evs...)
			for ev, err := range s.Query(testContext(t), nostr.Filter{Tags: nostr.TagMap{"t": {"bulk"}}}) {
				if err != nil {
					t.Fatalf("Query after %d events: %v", got, err)
				}
				if ev.ID != want[got] {
					t.Fatalf("event %d is %s (created_at %d, previous %d), want %s", got, ev.ID, ev.CreatedAt, prev.CreatedAt, want[got])
				}
				prev = ev
				got++
			}
			if got != n {
				t.Fatalf("streamed %d events, want %d", got, n)
			}
			if c := count(t, s, nostr.Filter{}); c != n {
				t.Fatalf("Count = %d, want %d", c, n)
			}
		}},
		{"breaking out of a query early releases its resources", func(t *testing.T, open Opener) {
			s := open(t)
			a := NewAuthor(t)
			base := past()
			var evs []*nostr.Event
			for i := range 50 {
				evs = append(evs, a.Event(t, 1, base+nostr.Timestamp(i), nil, fmt.Sprintf("stream %d", i)))
			}
			saveConcurrently(t, []storage.Store{s}, 4, evs)
			// Far more abandoned queries than any sane pool has connections:
			// a leak would make the calls below block until the deadline.
			for i := range 200 {
				for ev, err := range s.Query(testContext(t), nostr.Filter{}) {
					if err != nil {
						t.Fatalf("Query %d: %v", i, err)
					}
					_ = ev
					break
				}
			}
			if n := count(t, s, nostr.Filter{}); n != 50 {
				t.Fatalf("Count = %d, want 50", n)
			}
			after := a.Event(t, 1, base+100, nil, "after")
			mustSave(t, s, after)
			equalIDs(t, "newest after abandoned queries", queryIDs(t, s, nostr.Filter{Limit: 1}), ids(after))
		}},
		{"a closed store returns ErrClosed", func(t *testing.T, open Opener) {
			other := open(t)
			s := open(t)
			a := NewAuthor(t)
			ev := a.Event(t, 1, past(), nil, "before close")
			mustSave(t, s, ev)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			ctx := testContext(t)
			if _, err := s.Save(ctx, a.Event(t, 1, past(), nil, "after close")); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("Save after Close = %v, want ErrClosed", err)
			}
			if _, err := s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("Delete after Close = %v, want ErrClosed", err)
			}
			var qerr error
			for _, err := range s.Query(ctx, nostr.Filter{}) {
				qerr = err
			}
			if !errors.Is(qerr, storage.ErrClosed) {
				t.Errorf("Query after Close ended with %v, want ErrClosed", qerr)
			}
			if _, err := s.Count(ctx, nostr.Filter{}); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("Count after Close = %v, want ErrClosed", err)
			}
			if _, err := s.DeleteExpired(ctx, time.Now()); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("DeleteExpired after Close = %v, want ErrClosed", err)
			}
			if err := s.Ping(ctx); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("Ping after Close = %v, want ErrClosed", err)
			}
			if err := s.Close(); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("second Close = %v, want ErrClosed", err)
			}
			// Closing one handle leaves the database and its other handles alone.
			equalIDs(t, "other handle after Close", queryIDs(t, other, nostr.Filter{}), ids(ev))
		}},
	}
}
