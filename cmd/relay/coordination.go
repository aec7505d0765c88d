package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/burrow-relay/burrow/ordering"
	"github.com/burrow-relay/burrow/ordering/redisbus"
	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/policy/redislimit"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
	"github.com/nbd-wtf/go-nostr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// sequencing wires the ordered fan-out, commit slots and, with Redis, what
// several instances share: the event bus and the rate limits.
type sequencing struct {
	fanout *ordering.Fanout
	client *redis.Client // nil without --redis-url
	bus    *redisbus.Bus // nil without --redis-url
	cancel context.CancelFunc
	done   chan struct{}
}

// openRedis connects to --redis-url and checks that it answers, so a typo
// fails at start with one clear line rather than later.
func openRedis(ctx context.Context, rawURL string) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, usageError{fmt.Errorf("--redis-url %s: %w", postgres.RedactURL(rawURL), err)}
	}
	// Fail fast while Redis is away: the bus and the limiters have their
	// own fallbacks, and go-redis's default retries would hold each call
	// for seconds.
	opts.MaxRetries = 1
	opts.DialTimeout = 2 * time.Second
	c := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis at %s is unreachable: %w", postgres.RedactURL(rawURL), err)
	}
	return c, nil
}

// limiters returns the per-address and per-group event limiters: shared in
// Redis when there is one (falling back to in-process buckets while Redis
// is unreachable), in process otherwise.
func limiters(cfg config, client *redis.Client, logger *slog.Logger) (perIP, perGroup policy.RateLimiter, err error) {
	l := cfg.Limits
	localIP := policy.NewTokenBucket(l.EventRate, l.EventBurst, nil)
	localGroup := policy.NewTokenBucket(l.GroupRate, l.GroupBurst, nil)
	if client == nil {
		return localIP, localGroup, nil
	}
	ip, err := redislimit.New(redislimit.Config{Client: client, Rate: l.EventRate, Burst: l.EventBurst, Prefix: "burrow:rl:ip:"})
	if err != nil {
		return nil, nil, err
	}
	group, err := redislimit.New(redislimit.Config{Client: client, Rate: l.GroupRate, Burst: l.GroupBurst, Prefix: "burrow:rl:group:"})
	if err != nil {
		return nil, nil, err
	}
	return redislimit.Fallback(ip, localIP, logger), redislimit.Fallback(group, localGroup, logger), nil
}

// broadcastVia returns the server's BroadcastVia: the ordered fan-out over
// the local one, publishing to the bus when there is one. The fan-out is
// kept in q for start and Close.
func (q *sequencing) broadcastVia(store storage.Store, logger *slog.Logger, reg prometheus.Registerer, errp *error) func(server.Broadcaster) server.Broadcaster {
	return func(local server.Broadcaster) server.Broadcaster {
		fc := ordering.FanoutConfig{Log: store, Logger: logger, Registry: reg}
		if q.bus != nil {
			fc.Publish = func(ev *nostr.Event, seq int64) { q.bus.Publish(redisbus.Message{Event: ev, Seq: seq}) }
		}
		f, err := ordering.NewFanout(local, fc)
		if err != nil {
			*errp = err
			return local
		}
		q.fanout = f
		return f
	}
}

// start runs the bus receiver: events from other instances go into the
// fan-out, and a reconnect after an outage resynchronizes it from storage.
func (q *sequencing) start(logger *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.done = make(chan struct{})
	if q.bus == nil {
		close(q.done)
		return
	}
	q.bus.OnReconnect(q.fanout.Resync)
	go func() {
		defer close(q.done)
		err := q.bus.Run(ctx, func(m redisbus.Message) { q.fanout.Remote(m.Event, m.Seq) })
		if err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("event bus stopped", "err", err)
		}
	}()
}

// close stops the bus, the fan-out and the Redis client (after the server
// has shut down, so nothing publishes any more).
func (q *sequencing) close() error {
	if q.cancel != nil {
		q.cancel()
		<-q.done
	}
	var errs []error
	if q.bus != nil {
		errs = append(errs, q.bus.Close())
	}
	if q.fanout != nil {
		q.fanout.Close()
	}
	if q.client != nil {
		errs = append(errs, q.client.Close())
	}
	return errors.Join(errs...)
}
