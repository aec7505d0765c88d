package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/nbd-wtf/go-nostr"
)

// BenchmarkCrossInstanceAbsence measures, for two relay instances sharing
// one PostgreSQL database, the time from the OK of a KeyPackage slot
// replacement sent to the first instance until the second instance no
// longer returns the replaced version (polling its storage through REQ). It
// reports the p50 and p99 of that delay; the replacement's own OK latency is
// not included.
func BenchmarkCrossInstanceAbsence(b *testing.B) {
	db := testsvc.Postgres(b).URL
	start := func() liveRelay {
		c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--database-url", db, "--keypackage-slot-cap", "0",
			// The benchmark polls as fast as it can from one address, which
			// the default limits rightly refuse.
			"--request-rate", "1000000", "--request-burst", "1000000",
			"--conn-request-rate", "1000000", "--conn-request-burst", "1000000",
			"--event-rate", "1000000", "--event-burst", "1000000",
			"--conn-event-rate", "1000000", "--conn-event-burst", "1000000"}, env(nil), io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		r, err := startRelay(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r.Close(ctx)
		})
		client, err := dial(context.Background(), "ws://"+r.Addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { client.Close() })
		return liveRelay{ws: "ws://" + r.Addr, client: client}
	}
	a, other := start(), start()
	au := newAuthor(b)
	// Versions of one slot, signed before the timer starts.
	versions := make([]nostr.Event, b.N+1)
	base := nostr.Now() - nostr.Timestamp(b.N+10)
	for i := range versions {
		versions[i] = au.slotEvent(b, slotID(0), base+nostr.Timestamp(i))
	}
	if ok, msg, err := a.client.publish(versions[0], testTimeout); err != nil || !ok {
		b.Fatalf("first version: %v %q %v", ok, msg, err)
	}
	delays := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if ok, msg, err := a.client.publish(versions[i], testTimeout); err != nil || !ok {
			b.Fatalf("version %d: %v %q %v", i, ok, msg, err)
		}
		acked := time.Now()
		for {
			evs, err := other.client.query(nostr.Filter{IDs: []string{versions[i-1].ID}}, testTimeout)
			if err != nil {
				b.Fatal(err)
			}
			if !slices.ContainsFunc(evs, func(e nostr.Event) bool { return e.ID == versions[i-1].ID }) {
				break
			}
		}
		delays = append(delays, time.Since(acked))
	}
	b.StopTimer()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delays[(len(delays)*99)/100].Microseconds())/1000, "p99-ms")
}
