// Package policy owns Burrow's admission rules: the limits the relay enforces
// and advertises (NIP-11), the allowed-kinds setting, what every message
// costs its sender (Meter: token buckets per connection and per address),
// per-address quotas (AddrQuota), NIP-70 protected events, and how a
// client's address is found behind trusted proxies and grouped (IPv6 by
// prefix).
//
// Event rules keep khatru's hook shape (Rule), so khatru's policies
// constructors that need only the event plug in unchanged. Rules that need
// connection state (client address, authenticated pubkey) read it from the
// context, where the server puts it with WithConn.
package policy

import (
	"context"
	"net/netip"

	"github.com/nbd-wtf/go-nostr"
)

// Rule decides whether an event is refused. msg starts with a NIP-01 prefix
// ("invalid:", "blocked:", "rate-limited:", "auth-required:", "restricted:").
type Rule = func(ctx context.Context, ev *nostr.Event) (reject bool, msg string)

// Conn is what rules may know about the connection an event came from.
type Conn struct {
	// IP is the client address (see ClientIP).
	IP netip.Addr
	// Group is the address per-address limits count it under (see
	// GroupAddr); invalid when unknown.
	Group netip.Addr
	// AuthedPubKey is the NIP-42 authenticated pubkey, or "".
	AuthedPubKey string
}

type connKey struct{}

// WithConn returns ctx carrying c for rules to read.
func WithConn(ctx context.Context, c Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// ConnFrom returns the Conn stored by WithConn (zero Conn if none).
func ConnFrom(ctx context.Context) Conn {
	c, _ := ctx.Value(connKey{}).(Conn)
	return c
}

// Check runs rules in order and returns the first refusal.
func Check(ctx context.Context, ev *nostr.Event, rules []Rule) (reject bool, msg string) {
	for _, r := range rules {
		if reject, msg := r(ctx, ev); reject {
			return true, msg
		}
	}
	return false, ""
}

// ProtectedEvents is the NIP-70 rule: an event carrying a ["-"] tag is
// accepted only from a connection authenticated (NIP-42) as its author.
func ProtectedEvents(ctx context.Context, ev *nostr.Event) (bool, string) {
	if !isProtected(ev) {
		return false, ""
	}
	authed := ConnFrom(ctx).AuthedPubKey
	switch {
	case authed == "":
		return true, "auth-required: this event may only be published by its author"
	case authed != ev.PubKey:
		return true, "restricted: this event may only be published by its author"
	}
	return false, ""
}

func isProtected(ev *nostr.Event) bool {
	for _, tag := range ev.Tags {
		if len(tag) == 1 && tag[0] == "-" {
			return true
		}
	}
	return false
}
