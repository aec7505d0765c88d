package redislimit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/policy"
)

// retryAfter is how long Fallback keeps answering from the secondary after
// the primary failed before it tries the primary again. Without it every
// call would first wait for the failing primary (up to a dial timeout).
const retryAfter = time.Second

// fallback answers from primary, and from secondary while primary fails.
type fallback struct {
	primary, secondary policy.RateLimiter
	log                *slog.Logger
	now                func() time.Time
	retry              time.Duration

	mu        sync.Mutex
	down      bool
	nextProbe time.Time
}

// Fallback returns a RateLimiter that asks primary (the shared Redis
// Limiter) and, when it errors, answers from secondary (an in-process
// policy.TokenBucket with the same rate and burst) so limits keep working
// with Redis down, if only per instance. After a failure it stays on
// secondary for a second before one call tries primary again. It logs the start
// and the end of each outage once, to log (nil: slog.Default()). A call whose
// own context ended returns the primary's error instead.
func Fallback(primary, secondary policy.RateLimiter, log *slog.Logger) policy.RateLimiter {
	if log == nil {
		log = slog.Default()
	}
	return &fallback{primary: primary, secondary: secondary, log: log, now: time.Now, retry: retryAfter}
}

func (f *fallback) Allow(ctx context.Context, key string) (bool, error) {
	f.mu.Lock()
	now := f.now()
	skip := f.down && now.Before(f.nextProbe)
	if f.down && !skip {
		// This call probes the primary; others keep to the secondary
		// meanwhile rather than each waiting on a failing Redis.
		f.nextProbe = now.Add(f.retry)
	}
	f.mu.Unlock()
	if skip {
		return f.secondary.Allow(ctx, key)
	}
	ok, err := f.primary.Allow(ctx, key)
	if err == nil {
		f.mu.Lock()
		wasDown := f.down
		f.down = false
		f.mu.Unlock()
		if wasDown {
			f.log.Info("redislimit: shared rate limiter reachable again")
		}
		return ok, nil
	}
	if ctx.Err() != nil {
		return false, err
	}
	f.mu.Lock()
	wasDown := f.down
	f.down = true
	f.nextProbe = f.now().Add(f.retry)
	f.mu.Unlock()
	if !wasDown {
		// The key is a client address: not logged.
		f.log.Warn("redislimit: shared rate limiter failing; limiting per instance until it is back", "err", err)
	}
	return f.secondary.Allow(ctx, key)
}
