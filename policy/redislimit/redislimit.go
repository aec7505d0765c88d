// Package redislimit owns rate limits shared by several relay instances: a
// policy.RateLimiter whose token buckets live in Redis, and Fallback, which
// keeps limits working in process while Redis is unreachable.
//
// Each Allow runs one Lua script, atomically on the server, with the same
// token bucket rule as policy.TokenBucket (burst tokens, refilled at rate
// per second, one token per action). The script reads the clock with Redis
// TIME, so instances whose clocks disagree still share one timeline. A
// bucket key expires when it would have refilled completely: forgetting it
// then changes nothing, and idle keys do not pile up.
package redislimit

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/redis/go-redis/v9"

	"github.com/burrow-relay/burrow/policy"
)

// DefaultPrefix is Config.Prefix's default.
const DefaultPrefix = "burrow:rl:"

// Config configures a Limiter.
type Config struct {
	Client *redis.Client
	// Rate is the refill in tokens per second; it must be positive.
	Rate float64
	// Burst is the bucket size; it must be at least 1.
	Burst int
	// Prefix starts every bucket key; default DefaultPrefix.
	Prefix string
}

// Limiter is a policy.RateLimiter kept in Redis.
type Limiter struct {
	client *redis.Client
	rate   float64
	burst  int
	prefix string
	script *redis.Script
}

var _ policy.RateLimiter = (*Limiter)(nil)

// bucketLua takes one token from the bucket KEYS[1] if it holds one.
// ARGV: rate (tokens/s), burst. The hash holds tokens ("t") and the time of
// the last call in microseconds ("us"); both are written with string.format
// because Lua's default number-to-string conversion keeps 14 digits, too few
// for a microsecond clock. The key expires when the bucket would be full.
// Returns 1 if allowed, else 0.
const bucketLua = `
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = redis.call('HMGET', KEYS[1], 't', 'us')
local tokens = tonumber(v[1])
local last = tonumber(v[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
local elapsed = (now - last) / 1000000
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'us', string.format('%d', now))
local ttl = math.ceil((burst - tokens) / rate * 1000)
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
return allowed
`

// New returns a Limiter; it does not contact Redis.
func New(cfg Config) (*Limiter, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("redislimit: Config.Client is nil")
	case !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0):
		return nil, fmt.Errorf("redislimit: Rate %v must be positive and finite", cfg.Rate)
	case cfg.Burst < 1:
		return nil, fmt.Errorf("redislimit: Burst %d must be at least 1", cfg.Burst)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	return &Limiter{client: cfg.Client, rate: cfg.Rate, burst: cfg.Burst, prefix: cfg.Prefix,
		script: redis.NewScript(bucketLua)}, nil
}

// Allow takes one token from key's shared bucket if one is there. A Redis
// failure returns false and the error, wrapped; the caller picks a fallback
// (see Fallback).
func (l *Limiter) Allow(ctx context.Context, key string) (bool, error) {
	// Script.Run sends EVALSHA and falls back to EVAL when the server does
	// not know the script (first use, or after a restart).
	n, err := l.script.Run(ctx, l.client, []string{l.prefix + key}, l.rate, l.burst).Int()
	if err != nil {
		return false, fmt.Errorf("redislimit: allow: %w", err)
	}
	return n == 1, nil
}
