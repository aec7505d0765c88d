package policy

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// RateLimiter decides whether one more action under key is allowed now. The
// in-process TokenBucket implements it; a shared (Redis) limiter for several
// instances can implement it too, which is why Allow takes a context and may
// fail.
type RateLimiter interface {
	Allow(ctx context.Context, key string) (bool, error)
}

// TokenBucket is an in-process RateLimiter: one bucket per key holding up to
// burst tokens, refilled at rate tokens per second.
type TokenBucket struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	calls   int
}

type bucket struct {
	tokens float64
	last   time.Time
}

// pruneEvery is how many Allow calls pass between sweeps of idle buckets, so
// the map does not grow with every address ever seen.
const pruneEvery = 4096

// NewTokenBucket returns a limiter allowing burst actions at once and rate
// per second sustained. now may be nil (time.Now).
func NewTokenBucket(rate float64, burst int, now func() time.Time) *TokenBucket {
	if now == nil {
		now = time.Now
	}
	return &TokenBucket{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
}

// Allow takes one token from key's bucket if one is there.
func (tb *TokenBucket) Allow(_ context.Context, key string) (bool, error) {
	t := tb.now()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.calls++
	if tb.calls%pruneEvery == 0 {
		tb.prune(t)
	}
	b, ok := tb.buckets[key]
	if !ok {
		b = &bucket{tokens: tb.burst, last: t}
		tb.buckets[key] = b
	}
	b.tokens = min(tb.burst, b.tokens+t.Sub(b.last).Seconds()*tb.rate)
	b.last = t
	if b.tokens < 1 {
		return false, nil
	}
	b.tokens--
	return true, nil
}

// prune drops buckets that have refilled completely: forgetting them changes
// nothing.
func (tb *TokenBucket) prune(t time.Time) {
	for k, b := range tb.buckets {
		if b.tokens+t.Sub(b.last).Seconds()*tb.rate >= tb.burst {
			delete(tb.buckets, k)
		}
	}
}

// Bucket is one token bucket, for limits held by one owner (a connection):
// burst tokens, refilled at rate per second. It is not safe for concurrent
// use.
type Bucket struct {
	rate, burst, tokens float64
	last                time.Time
	now                 func() time.Time
}

// NewBucket returns a full bucket. now may be nil (time.Now).
func NewBucket(rate float64, burst int, now func() time.Time) *Bucket {
	if now == nil {
		now = time.Now
	}
	return &Bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// Allow takes one token if one is there.
func (b *Bucket) Allow() bool {
	t := b.now()
	if t.After(b.last) {
		b.tokens = min(b.burst, b.tokens+t.Sub(b.last).Seconds()*b.rate)
	}
	b.last = t
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// AddrQuota caps a quantity per address group, in process: connections,
// filter values of open subscriptions, stored queries in flight.
type AddrQuota struct {
	max int

	mu   sync.Mutex
	used map[netip.Addr]int
}

// NewAddrQuota returns a quota allowing max per address.
func NewAddrQuota(max int) *AddrQuota {
	return &AddrQuota{max: max, used: make(map[netip.Addr]int)}
}

// Max returns the cap.
func (q *AddrQuota) Max() int { return q.max }

// Take takes n for addr; false (and nothing taken) means the cap would be
// passed.
func (q *AddrQuota) Take(addr netip.Addr, n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.used[addr]+n > q.max {
		return false
	}
	q.used[addr] += n
	return true
}

// Used returns what addr holds now.
func (q *AddrQuota) Used(addr netip.Addr) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used[addr]
}

// Give returns n taken by Take.
func (q *AddrQuota) Give(addr netip.Addr, n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if left := q.used[addr] - n; left > 0 {
		q.used[addr] = left
	} else {
		delete(q.used, addr)
	}
}

// IPBlocklist holds addresses refused by the operator (NIP-86 blockip).
type IPBlocklist struct {
	mu      sync.RWMutex
	reasons map[netip.Addr]string
}

// NewIPBlocklist returns an empty blocklist.
func NewIPBlocklist() *IPBlocklist {
	return &IPBlocklist{reasons: make(map[netip.Addr]string)}
}

// Block adds ip with a reason.
func (b *IPBlocklist) Block(ip netip.Addr, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reasons[ip.Unmap()] = reason
}

// Unblock removes ip.
func (b *IPBlocklist) Unblock(ip netip.Addr) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.reasons, ip.Unmap())
}

// Blocked reports whether ip is blocked.
func (b *IPBlocklist) Blocked(ip netip.Addr) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.reasons[ip.Unmap()]
	return ok
}

// BlockedIP is one blocklist entry.
type BlockedIP struct {
	IP     netip.Addr
	Reason string
}

// List returns the blocked addresses, in no particular order.
func (b *IPBlocklist) List() []BlockedIP {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]BlockedIP, 0, len(b.reasons))
	for ip, r := range b.reasons {
		out = append(out, BlockedIP{IP: ip, Reason: r})
	}
	return out
}

// String describes the entry for logs.
func (e BlockedIP) String() string { return fmt.Sprintf("%s (%s)", e.IP, e.Reason) }
