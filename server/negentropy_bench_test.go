package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/nip77client"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
)

// BenchmarkNegentropy times whole NIP-77 reconciliations against a relay on
// each backend (issue 16, performance): from NEG-OPEN to the client
// knowing every difference, over loopback websocket, with the client's
// side (go-nostr's negentropy) in the same process.
//   - all-100k: a filter matching 100,000 stored events; the client lacks
//     500 of them and holds 500 the relay lacks (1 % differ);
//   - group-16384: one group's 16,384 kind 445 events ({"kinds":[445],
//     "#h":[...]}, as Marmot clients repair history), beside 20,000 events
//     of other groups; the client lacks 1 %.
//
// session-bytes is the memory the relay charges the session (its keys);
// the events are stored with made-up signatures (the store does not
// check them), by 8 concurrent writers, before the timer starts.
func BenchmarkNegentropy(b *testing.B) {
	for _, backend := range []struct {
		name string
		open func(testing.TB) (storage.Store, func())
	}{{"sqlite", func(tb testing.TB) (storage.Store, func()) { return newTestStore(tb), func() {} }}, {"postgres", analyzedPostgres}} {
		b.Run(backend.name, func(b *testing.B) {
			store, analyze := backend.open(b)
			h := strings.Repeat("ab", 32)
			var group, others []*nostr.Event
			for i := range 16_384 {
				group = append(group, fakeEvent(445, i, nostr.Tags{{"h", h}}))
			}
			for i := range 20_000 {
				others = append(others, fakeEvent(445, 100_000+i, nostr.Tags{{"h", fmt.Sprintf("%064x", i%50)}}))
			}
			var notes []*nostr.Event
			for i := range 100_000 - len(group) - len(others) {
				notes = append(notes, fakeEvent(1, 200_000+i, nil))
			}
			all := append(append(append([]*nostr.Event{}, group...), others...), notes...)
			fill(b, store, all)
			analyze()
			cfg := negConfig()
			cfg.Limits = testLimits()
			r := startRelay(b, cfg, store)

			for _, tc := range []struct {
				name          string
				f             nostr.Filter
				stored        []*nostr.Event
				lack, surplus int
			}{
				{"all-100k", nostr.Filter{}, all, 500, 500},
				{"group-16384", nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}, group, 164, 0},
			} {
				b.Run(tc.name, func(b *testing.B) {
					// The client lacks every k-th event and holds
					// surplus events the relay never saw.
					vec := vector.New()
					step := len(tc.stored) / tc.lack
					for i, ev := range tc.stored {
						if i%step != 0 {
							vec.Insert(ev.CreatedAt, ev.ID)
						}
					}
					for i := range tc.surplus {
						ev := fakeEvent(1, 900_000+i, nil)
						vec.Insert(ev.CreatedAt, ev.ID)
					}
					vec.Seal()
					wantNeed := (len(tc.stored) + step - 1) / step
					b.ReportAllocs()
					b.ResetTimer()
					var rounds int
					for range b.N {
						have, need, n := benchReconcile(b, r.url, tc.f, vec)
						if have != tc.surplus || need != wantNeed {
							b.Fatalf("found have %d need %d, want %d and %d", have, need, tc.surplus, wantNeed)
						}
						rounds = n
					}
					b.StopTimer()
					b.ReportMetric(float64(rounds), "rounds")
					b.ReportMetric(float64(len(tc.stored)*negKeyBytes+negSessionBytes), "session-bytes")
				})
			}
		})
	}
}

// analyzedPostgres is a PostgreSQL store and a function that runs ANALYZE
// on its database, as autovacuum would after a bulk load: without
// statistics the planner misjudges the group's tag rows (a reconciliation
// of the group took 115 ms to read its keys instead of 35 ms).
func analyzedPostgres(tb testing.TB) (storage.Store, func()) {
	url := testsvc.Postgres(tb).URL
	st, err := postgres.Open(context.Background(), postgres.Config{URL: url})
	if err != nil {
		tb.Fatalf("opening postgres store: %v", err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st, func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			tb.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "ANALYZE"); err != nil {
			tb.Fatal(err)
		}
	}
}

// fakeEvent is an event with a real id and a made-up signature, created
// in the past at a time spread by i.
func fakeEvent(kind, i int, tags nostr.Tags) *nostr.Event {
	if tags == nil {
		tags = nostr.Tags{}
	}
	ev := &nostr.Event{
		PubKey:    fmt.Sprintf("%064x", i%97+1),
		CreatedAt: nostr.Timestamp(1_700_000_000 + i/7),
		Kind:      kind,
		Tags:      tags,
		Content:   fmt.Sprintf("c%d", i),
		Sig:       strings.Repeat("5", 128),
	}
	if kind == 445 {
		ev.Content = groupContent(fmt.Sprint(i))
	}
	ev.ID = ev.GetID()
	return ev
}

// fill saves evs with 8 concurrent writers.
func fill(b *testing.B, store storage.Store, evs []*nostr.Event) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(evs); i += 8 {
				if _, err := store.Save(context.Background(), evs[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("fill: %v", err)
	}
}

// benchReconcile runs one reconciliation of vec against the relay's
// events matching f and returns how many ids the client has that the
// relay lacks, how many it needs, and the rounds it took.
func benchReconcile(b *testing.B, url string, f nostr.Filter, vec *vector.Vector) (have, need, rounds int) {
	ws, err := nip77client.Dial(context.Background(), url, nil, 30*time.Second, 64<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	sess := nip77client.Session{Sub: "b", Filter: f, FrameLimit: 200_000, Timeout: 30 * time.Second,
		Have: func(string) { have++ }, Need: func(string) { need++ }}
	if rounds, err = sess.Run(context.Background(), ws, vec); err != nil {
		b.Fatal(err)
	}
	return have, need, rounds
}
