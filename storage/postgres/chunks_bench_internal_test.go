package postgres

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// BenchmarkBigAuthorRemoval measures how long the chunk transactions of a
// ban, and of a request to vanish, of an author with 100,000 events (and
// 1,000 gift wraps to it, for vanish) take (issue 14 item 10: never more
// than 100 ms). Each holds the author's lock, which a save of the author
// or of a gift wrap to it waits for in a writer's group commit. Each op is
// one removal from a freshly filled database (the fill is not timed);
// reported over every op's chunks: chunk-ms-p50, -p99 and -max. The
// server keeps fsync and synchronous_commit on.
//
//	go test ./storage/postgres -run '^$' -bench BenchmarkBigAuthorRemoval -benchtime 3x
func BenchmarkBigAuthorRemoval(b *testing.B) {
	for _, what := range []string{"ban", "vanish"} {
		b.Run(what, func(b *testing.B) {
			const n, wraps = 100_000, 1000
			var (
				mu    sync.Mutex
				holds []time.Duration
			)
			hook := func(d time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				holds = append(holds, d)
			}
			for range b.N {
				b.StopTimer()
				s, err := Open(context.Background(), Config{URL: testsvc.Postgres(b).URL, chunkHook: hook})
				if err != nil {
					b.Fatal(err)
				}
				a := storetest.NewAuthor(b)
				w := 0
				if what == "vanish" {
					w = wraps
				}
				mu.Lock()
				filled := len(holds)
				mu.Unlock()
				fillBigAuthor(b, s, a, n, w, nostr.Now()-10)
				mu.Lock()
				holds = holds[:filled] // the fill's KeyPackages are not a removal
				mu.Unlock()
				ctx := context.Background()
				b.StartTimer()
				if what == "ban" {
					_, err = s.Ban(ctx, a.PubKey)
				} else {
					_, err = s.Save(ctx, a.Event(b, 62, nostr.Now(), nostr.Tags{{"relay", "ALL_RELAYS"}}, ""))
				}
				b.StopTimer()
				if err != nil {
					b.Fatalf("%s: %v", what, err)
				}
				s.Close()
				b.StartTimer()
			}
			b.StopTimer()
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(holds)
			pct := func(p float64) float64 {
				if len(holds) == 0 {
					return 0
				}
				return float64(holds[int(float64(len(holds)-1)*p)]) / float64(time.Millisecond)
			}
			b.ReportMetric(float64(len(holds))/float64(b.N), "chunks/op")
			b.ReportMetric(pct(0.5), "chunk-ms-p50")
			b.ReportMetric(pct(0.99), "chunk-ms-p99")
			b.ReportMetric(pct(1), "chunk-ms-max")
		})
	}
}
