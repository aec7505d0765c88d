package policy

import (
	"context"
	"net/netip"
)

// Meter charges every client message to token buckets before the relay
// spends work on it (DESIGN.md "Who may read what, and what every request
// costs"): an EVENT to its connection's and its address's event buckets,
// before its signature is verified; every other message (REQ, COUNT,
// CLOSE, AUTH, and anything unreadable) to the request buckets. Address
// buckets live in the RateLimiters given (shared in Redis when there is
// one); connection buckets live with the connection.
type Meter struct {
	limits           Limits
	events, requests RateLimiter
}

// NewMeter returns a Meter charging addresses to events and requests (nil:
// in-process buckets from limits).
func NewMeter(limits Limits, events, requests RateLimiter) *Meter {
	if events == nil {
		events = NewTokenBucket(limits.EventRate, limits.EventBurst, nil)
	}
	if requests == nil {
		requests = NewTokenBucket(limits.RequestRate, limits.RequestBurst, nil)
	}
	return &Meter{limits: limits, events: events, requests: requests}
}

// ConnMeter charges one connection's messages; it is used by that
// connection's reader only.
type ConnMeter struct {
	m                *Meter
	key              string // the address group, "" when unknown
	events, requests *Bucket
}

// Conn returns the meter of a connection from address group (see
// GroupAddr; invalid when unknown, which skips the address buckets).
func (m *Meter) Conn(group netip.Addr) *ConnMeter {
	c := &ConnMeter{
		m:        m,
		events:   NewBucket(m.limits.ConnEventRate, m.limits.ConnEventBurst, nil),
		requests: NewBucket(m.limits.ConnRequestRate, m.limits.ConnRequestBurst, nil),
	}
	if group.IsValid() {
		c.key = group.String()
	}
	return c
}

// Charge takes one token for a message (an EVENT when event is true) and
// returns "" or the "rate-limited:" refusal. The connection's bucket is
// charged first, so a connection over its own limit costs the shared
// limiter nothing. A failing address limiter lets the message through: a
// broken shared limiter must not stop the relay.
func (c *ConnMeter) Charge(ctx context.Context, event bool) string {
	b, shared, what := c.requests, c.m.requests, "requests"
	if event {
		b, shared, what = c.events, c.m.events, "events"
	}
	if !b.Allow() {
		return "rate-limited: too many " + what + " on this connection, slow down"
	}
	if c.key == "" {
		return ""
	}
	if ok, err := shared.Allow(ctx, c.key); err == nil && !ok {
		return "rate-limited: too many " + what + " from your address, slow down"
	}
	return ""
}
