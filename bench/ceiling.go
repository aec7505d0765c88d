package bench

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// ceilingSample is how many distinct signed events the ceiling cycles through.
const ceilingSample = 64

// VerifyCeiling measures how many BIP-340 event signatures this machine verifies per second with
// go-nostr's CheckSignature on GOMAXPROCS goroutines for about d. A relay that checks every
// signature cannot ingest faster than this; it is the number every ingest figure is read against.
// Only successful verifications count, so a broken verifier shows as 0. It returns 0 if ctx ends
// first or d is not positive.
func VerifyCeiling(ctx context.Context, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	events := make([]nostr.Event, ceilingSample)
	for i := range events {
		events[i] = nostr.Event{
			Kind:      445,
			CreatedAt: nostr.Now(),
			Tags:      nostr.Tags{{"h", randomHex(32)}},
			Content:   randomContent(DefaultContentBytes),
		}
		if err := events[i].Sign(nostr.GeneratePrivateKey()); err != nil {
			return 0
		}
	}

	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		verified atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int64
			for i := w; runCtx.Err() == nil; i++ {
				if ok, err := events[i%len(events)].CheckSignature(); ok && err == nil {
					n++
				}
			}
			verified.Add(n)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return 0
	}
	return float64(verified.Load()) / elapsed.Seconds()
}
