package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/burrow-relay/burrow/ordering"
	"github.com/burrow-relay/burrow/ordering/redisbus"
	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/policy/redislimit"
	"github.com/burrow-relay/burrow/server"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/postgres"
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

// Defaults of the per-group claim bucket (--group-claim-rate and
// --group-claim-burst): a group commits a few times a minute at most, and
// when an epoch changes each member may claim its slot at once, so a
// burst of 500 covers a 500-member race while an outsider's flood of
// claims with fresh keys adds at most 10 Commits a second to a group's log.
const (
	defaultGroupClaimRate  = 10
	defaultGroupClaimBurst = 500
)

// redisPrefix is the deployment's prefix of every Redis key: --redis-prefix,
// or by default "burrow:<database number>:", so that deployments on
// different databases of one Redis server never share a stream or a bucket
// (Redis streams and keys live in a database; pub/sub, which the bus used
// before, ignored it).
func redisPrefix(cfg config, client *redis.Client) string {
	if cfg.RedisPrefix != "" {
		return cfg.RedisPrefix
	}
	return "burrow:" + strconv.Itoa(client.Options().DB) + ":"
}

// rateLimiters are the shared token buckets: events and other messages per
// client address, kind 445 events and commit-slot claims per group.
type rateLimiters struct {
	events, requests, group, claims policy.RateLimiter
}

// limiters returns the rate limiters: shared in Redis when there is one
// (falling back to in-process buckets while Redis is unreachable), in
// process otherwise.
func limiters(cfg config, client *redis.Client, logger *slog.Logger) (rateLimiters, error) {
	one := func(rate float64, burst int, redisPrefix string) (policy.RateLimiter, error) {
		local := policy.NewTokenBucket(rate, burst, nil)
		if client == nil {
			return local, nil
		}
		shared, err := redislimit.New(redislimit.Config{Client: client, Rate: rate, Burst: burst, Prefix: redisPrefix})
		if err != nil {
			return nil, err
		}
		return redislimit.Fallback(shared, local, logger), nil
	}
	l := cfg.Limits
	prefix := ""
	if client != nil {
		prefix = redisPrefix(cfg, client) + "rl:"
	}
	var out rateLimiters
	var err error
	if out.events, err = one(l.EventRate, l.EventBurst, prefix+"ip:"); err != nil {
		return out, err
	}
	if out.requests, err = one(l.RequestRate, l.RequestBurst, prefix+"req:"); err != nil {
		return out, err
	}
	if out.group, err = one(l.GroupRate, l.GroupBurst, prefix+"group:"); err != nil {
		return out, err
	}
	out.claims, err = one(cfg.GroupClaimRate, cfg.GroupClaimBurst, prefix+"claim:")
	return out, err
}

// openBus opens the event bus between instances on the deployment's
// stream, authenticated with a key kept in the database the instances
// share (storage.Secrets): whoever writes to Redis without it cannot get
// an event delivered. Its counters are exported as metrics.
func openBus(ctx context.Context, cfg config, secrets storage.Secrets, client *redis.Client, logger *slog.Logger, reg prometheus.Registerer) (*redisbus.Bus, error) {
	if secrets == nil {
		return nil, errors.New("the storage backend keeps no secrets, so the Redis bus cannot be authenticated")
	}
	key, err := secrets.Secret(ctx, "redis-bus", 32)
	if err != nil {
		return nil, fmt.Errorf("read the Redis bus key: %w", err)
	}
	bus, err := redisbus.New(redisbus.Config{Client: client, Stream: redisPrefix(cfg, client) + "bus", Key: key,
		Retention: cfg.RedisBusRetention, QueueBytes: cfg.busQueueBytes, Logger: logger})
	if err != nil {
		return nil, err
	}
	for _, m := range []struct {
		name, help string
		value      func() uint64
	}{
		{"burrow_bus_dropped_total", "Events this instance could not put on the Redis bus (its queue was full while Redis was slow or away); other instances count them as missed.", bus.Dropped},
		{"burrow_bus_missed_total", "Events of other instances this instance never received from the Redis bus (their sender dropped them, or the stream trimmed them while this instance could not read); group events among them are refilled from the database.", bus.Missed},
		{"burrow_bus_rejected_total", "Redis bus entries not delivered because they could not be authenticated or decoded.", bus.Rejected},
	} {
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help},
			func() float64 { return float64(m.value()) })); err != nil {
			bus.Close()
			return nil, err
		}
	}
	for _, g := range []struct {
		name, help string
		value      func() float64
	}{
		{"burrow_bus_queued_bytes", "Bytes of frames waiting to be written to the Redis bus: near zero while Redis keeps up, growing while it is slow or away (past 64 MiB frames are dropped).",
			func() float64 { return float64(bus.QueuedBytes()) }},
		{"burrow_redis_up", "1 while the Redis bus reads the stream and its last write succeeded, 0 while Redis is unreachable (the relay serves its own clients meanwhile; /readyz says degraded).",
			func() float64 {
				if bus.Connected() {
					return 1
				}
				return 0
			}},
	} {
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, g.value)); err != nil {
			bus.Close()
			return nil, err
		}
	}
	return bus, nil
}

// redisDependency is /readyz's check of Redis: a PING with the client's
// short timeouts (openRedis).
func redisDependency(client *redis.Client) server.Dependency {
	return server.Dependency{Name: "redis", Check: func(ctx context.Context) error {
		return client.Ping(ctx).Err()
	}}
}

// broadcastVia returns the server's BroadcastVia: the ordered fan-out over
// the local one, publishing to the bus when there is one. The fan-out is
// kept in q for start and Close.
func (q *sequencing) broadcastVia(store storage.Store, logger *slog.Logger, reg prometheus.Registerer, errp *error) func(server.Broadcaster) (server.Broadcaster, server.GroupWatcher) {
	return func(local server.Broadcaster) (server.Broadcaster, server.GroupWatcher) {
		fc := ordering.FanoutConfig{Log: store, Logger: logger, Registry: reg}
		if q.bus != nil {
			fc.Publish = func(d server.Delivery) {
				q.bus.Publish(redisbus.Message{Event: d.Event, Seq: d.Seq, Releases: d.Releases})
			}
		}
		f, err := ordering.NewFanout(local, fc)
		if err != nil {
			*errp = err
			return local, nil
		}
		q.fanout = f
		return f, f
	}
}

// publishDeletions is the server's PublishDeletions: deletion notices to
// the other instances over the bus (nil without one).
func (q *sequencing) publishDeletions() func(ids []string) {
	if q.bus == nil {
		return nil
	}
	return func(ids []string) { q.bus.Publish(redisbus.Message{Deleted: ids}) }
}

// start runs the bus receiver: events from other instances go into the
// fan-out, deletion notices to srv (so copies still queued for its
// subscribers are dropped), and frames found lost make it read the known
// groups' logs from storage.
func (q *sequencing) start(srv *server.Server, logger *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.done = make(chan struct{})
	if q.bus == nil {
		close(q.done)
		return
	}
	q.bus.OnLoss(q.fanout.Resync)
	go func() {
		defer close(q.done)
		err := q.bus.Run(ctx, func(m redisbus.Message) {
			if m.Event == nil {
				srv.RemoteDeletions(m.Deleted)
				return
			}
			q.fanout.Remote(server.Delivery{Event: m.Event, Seq: m.Seq, Releases: m.Releases})
		})
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
