package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Limits holds every limit the relay enforces; NIP-11 advertises the same
// values, so what clients read is what they get.
type Limits struct {
	// MaxMessageLength is the largest websocket message accepted, in bytes.
	// Larger messages are refused with "invalid:" and the connection stays.
	MaxMessageLength int
	// MaxSubscriptions is the number of open subscriptions per connection.
	MaxSubscriptions int
	// MaxFilters is the number of filters per REQ or COUNT.
	MaxFilters int
	// MaxLimit clamps each filter's limit (and an absent limit) on REQ.
	MaxLimit int
	// MaxSubIDLength is the longest subscription id, in bytes.
	MaxSubIDLength int
	// MaxEventTags is the largest number of tags an event may carry.
	MaxEventTags int
	// MaxContentLength is the largest event content, in bytes, for kinds
	// other than the group transport's; gift wraps may always carry the
	// largest NIP-44 payload (MaxNIP44Payload).
	MaxContentLength int
	// MaxGroupContentLength is the largest kind 445 content, in bytes; a
	// commit-slot claim (kind 20445) may carry such an event plus its
	// envelope (ClaimOverhead).
	MaxGroupContentLength int
	// CreatedAtFuture is how far in the future created_at may be.
	CreatedAtFuture time.Duration
	// CreatedAtPast, if positive, is how far in the past created_at may be;
	// zero accepts any age.
	CreatedAtPast time.Duration
	// ConnectionsPerIP caps simultaneous websocket connections per client
	// address.
	ConnectionsPerIP int
	// EventRate is the sustained number of events per second per client
	// address (a token bucket refilled at this rate).
	EventRate float64
	// EventBurst is the bucket size: how many events one address may send at
	// once after being idle.
	EventBurst int
	// GroupRate and GroupBurst are the per-group backstop for kind 445 (one
	// bucket per h, shared by every address; see GroupFlood).
	GroupRate  float64
	GroupBurst int
	// ConnEventRate and ConnEventBurst are the per-connection event bucket,
	// charged with EventRate's per-address bucket when an EVENT arrives,
	// before its signature is verified.
	ConnEventRate  float64
	ConnEventBurst int
	// RequestRate and RequestBurst are the per-address bucket for every
	// other message (REQ, COUNT, CLOSE, AUTH, and anything unreadable);
	// ConnRequestRate and ConnRequestBurst the per-connection one.
	RequestRate      float64
	RequestBurst     int
	ConnRequestRate  float64
	ConnRequestBurst int
	// IPv6PrefixBits groups IPv6 clients for every per-address limit: all
	// addresses in one prefix of this length count as one address (a
	// single host is usually given a whole /64).
	IPv6PrefixBits int
	// MaxFilterValues caps the values (ids, authors, kinds and tag values,
	// and at least one per filter) of the open subscriptions of one
	// connection; MaxFilterValuesPerIP of all connections from one address.
	// They bound the live-matching index.
	MaxFilterValues      int
	MaxFilterValuesPerIP int
	// MaxQueriesPerIP caps the stored queries (a REQ until its EOSE, a
	// COUNT) in flight at once from one address; one connection runs one
	// at a time.
	MaxQueriesPerIP int
	// CountTimeout bounds one COUNT.
	CountTimeout time.Duration
	// NegMaxIDs caps the events one NIP-77 reconciliation covers (not the
	// REQ clamp): a NEG-OPEN whose filter matches more is refused with
	// NEG-ERR "blocked:". NegSessions caps the reconciliations open at
	// once on one connection; NegBytes the memory their event keys hold
	// (40 bytes a key) on one connection, NegBytesPerIP from one address.
	// NegIdleTimeout closes a reconciliation that saw no NEG-MSG for this
	// long (NEG-ERR "closed:").
	NegMaxIDs      int
	NegSessions    int
	NegBytes       int
	NegBytesPerIP  int
	NegIdleTimeout time.Duration
	// OutboundQueue is the number of messages queued per connection before a
	// reader that does not keep up is disconnected.
	OutboundQueue int
	// OutboundBytes bounds the bytes queued per connection the same way,
	// and OutboundTotalBytes the bytes queued for all connections together:
	// past it, a connection that is already behind is disconnected rather
	// than given more.
	OutboundBytes      int
	OutboundTotalBytes int
	// WriteTimeout bounds each websocket write; a peer that does not accept
	// data for this long is disconnected.
	WriteTimeout time.Duration
	// PingInterval is how often the relay pings each connection;
	// PongTimeout is how long a connection may stay silent (no message, no
	// pong) before it is dropped as dead.
	PingInterval time.Duration
	PongTimeout  time.Duration
}

// DefaultLimits suits a busy client on one address: 64 connections, a burst
// of 5,000 events over 8 connections and 1,000 events pipelined on one
// connection pass without refusal.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageLength: 512 << 10,
		MaxSubscriptions: 100,
		MaxFilters:       20,
		MaxLimit:         500,
		MaxSubIDLength:   100,
		MaxEventTags:     2000,
		MaxContentLength: 64 << 10,
		// Marmot group events carry MLS messages (Commits for large
		// groups are big).
		MaxGroupContentLength: 256 << 10,
		CreatedAtFuture:       15 * time.Minute,
		ConnectionsPerIP:      64,
		EventRate:             200,
		EventBurst:            10000,
		GroupRate:             500,
		GroupBurst:            20000,
		ConnEventRate:         100,
		ConnEventBurst:        2000,
		RequestRate:           200,
		RequestBurst:          2000,
		ConnRequestRate:       50,
		ConnRequestBurst:      500,
		IPv6PrefixBits:        64,
		MaxFilterValues:       10000,
		MaxFilterValuesPerIP:  50000,
		MaxQueriesPerIP:       16,
		CountTimeout:          3 * time.Second,
		NegMaxIDs:             1_000_000,
		NegSessions:           4,
		NegBytes:              64 << 20,
		NegBytesPerIP:         256 << 20,
		NegIdleTimeout:        30 * time.Second,
		OutboundQueue:         2048,
		OutboundBytes:         8 << 20,
		OutboundTotalBytes:    512 << 20,
		WriteTimeout:          10 * time.Second,
		PingInterval:          25 * time.Second,
		PongTimeout:           60 * time.Second,
	}
}

// ErrInvalidLimits is wrapped by Validate's errors.
var ErrInvalidLimits = errors.New("invalid limits")

// Validate reports the first limit that cannot work.
func (l Limits) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"max message length", l.MaxMessageLength},
		{"max subscriptions", l.MaxSubscriptions},
		{"max filters", l.MaxFilters},
		{"max limit", l.MaxLimit},
		{"max subscription id length", l.MaxSubIDLength},
		{"max event tags", l.MaxEventTags},
		{"max content length", l.MaxContentLength},
		{"connections per IP", l.ConnectionsPerIP},
		{"event burst", l.EventBurst},
		{"max group content length", l.MaxGroupContentLength},
		{"group burst", l.GroupBurst},
		{"per-connection event burst", l.ConnEventBurst},
		{"request burst", l.RequestBurst},
		{"per-connection request burst", l.ConnRequestBurst},
		{"max filter values", l.MaxFilterValues},
		{"max filter values per IP", l.MaxFilterValuesPerIP},
		{"max queries per IP", l.MaxQueriesPerIP},
		{"negentropy max ids", l.NegMaxIDs},
		{"negentropy sessions", l.NegSessions},
		{"negentropy bytes", l.NegBytes},
		{"negentropy bytes per IP", l.NegBytesPerIP},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("%w: %s must be positive, got %d", ErrInvalidLimits, p.name, p.v)
		}
	}
	switch {
	case l.EventRate <= 0:
		return fmt.Errorf("%w: event rate must be positive, got %v", ErrInvalidLimits, l.EventRate)
	case l.GroupRate <= 0:
		return fmt.Errorf("%w: group rate must be positive, got %v", ErrInvalidLimits, l.GroupRate)
	case l.ConnEventRate <= 0 || l.RequestRate <= 0 || l.ConnRequestRate <= 0:
		return fmt.Errorf("%w: per-connection event rate, request rate and per-connection request rate must be positive, got %v, %v, %v",
			ErrInvalidLimits, l.ConnEventRate, l.RequestRate, l.ConnRequestRate)
	case l.IPv6PrefixBits < 1 || l.IPv6PrefixBits > 128:
		return fmt.Errorf("%w: IPv6 prefix must be 1 to 128 bits, got %d", ErrInvalidLimits, l.IPv6PrefixBits)
	case l.MaxFilterValuesPerIP < l.MaxFilterValues:
		return fmt.Errorf("%w: max filter values per IP %d is below the per-connection %d", ErrInvalidLimits, l.MaxFilterValuesPerIP, l.MaxFilterValues)
	case l.NegBytesPerIP < l.NegBytes:
		return fmt.Errorf("%w: negentropy bytes per IP %d is below the per-connection %d", ErrInvalidLimits, l.NegBytesPerIP, l.NegBytes)
	case l.NegIdleTimeout <= 0:
		return fmt.Errorf("%w: negentropy idle timeout must be positive, got %v", ErrInvalidLimits, l.NegIdleTimeout)
	case l.CountTimeout <= 0:
		return fmt.Errorf("%w: count timeout must be positive, got %v", ErrInvalidLimits, l.CountTimeout)
	case l.OutboundBytes < 64<<10:
		return fmt.Errorf("%w: outbound bytes must be at least 64 KiB, got %d", ErrInvalidLimits, l.OutboundBytes)
	case l.OutboundTotalBytes < l.OutboundBytes:
		return fmt.Errorf("%w: total outbound bytes %d is below the per-connection %d", ErrInvalidLimits, l.OutboundTotalBytes, l.OutboundBytes)
	case l.PingInterval <= 0 || l.PongTimeout <= l.PingInterval:
		return fmt.Errorf("%w: ping interval must be positive and below the pong timeout, got %v and %v", ErrInvalidLimits, l.PingInterval, l.PongTimeout)
	case l.CreatedAtFuture <= 0:
		return fmt.Errorf("%w: created_at future bound must be positive, got %v", ErrInvalidLimits, l.CreatedAtFuture)
	case l.CreatedAtPast < 0:
		return fmt.Errorf("%w: created_at past bound must not be negative, got %v", ErrInvalidLimits, l.CreatedAtPast)
	case l.OutboundQueue < 16:
		// Half the queue is reserved for live events (see server), so a tiny
		// queue would disconnect readers that keep up.
		return fmt.Errorf("%w: outbound queue must hold at least 16 messages, got %d", ErrInvalidLimits, l.OutboundQueue)
	case l.WriteTimeout <= 0:
		return fmt.Errorf("%w: write timeout must be positive, got %v", ErrInvalidLimits, l.WriteTimeout)
	case l.MaxContentLength > l.MaxMessageLength:
		return fmt.Errorf("%w: max content length %d exceeds max message length %d", ErrInvalidLimits, l.MaxContentLength, l.MaxMessageLength)
	case l.MaxGroupContentLength+ClaimOverhead > l.MaxMessageLength:
		return fmt.Errorf("%w: max group content length %d plus %d bytes for a commit-slot claim exceeds max message length %d",
			ErrInvalidLimits, l.MaxGroupContentLength, ClaimOverhead, l.MaxMessageLength)
	}
	return nil
}

// EventShape returns the rule enforcing the per-event limits: tag count,
// content length and created_at bounds, measured against now().
func (l Limits) EventShape(now func() time.Time) Rule {
	return func(_ context.Context, ev *nostr.Event) (bool, string) {
		if len(ev.Tags) > l.MaxEventTags {
			return true, fmt.Sprintf("invalid: too many tags (%d > %d)", len(ev.Tags), l.MaxEventTags)
		}
		if max := l.contentLimit(ev.Kind); len(ev.Content) > max {
			return true, fmt.Sprintf("invalid: content too long (%d > %d bytes)", len(ev.Content), max)
		}
		t := now()
		created := time.Unix(int64(ev.CreatedAt), 0)
		if created.After(t.Add(l.CreatedAtFuture)) {
			return true, "invalid: created_at is too far in the future"
		}
		if l.CreatedAtPast > 0 && created.Before(t.Add(-l.CreatedAtPast)) {
			return true, "invalid: created_at is too far in the past"
		}
		return false, ""
	}
}

// ClaimOverhead is what a commit-slot claim's content may add to the kind
// 445 it wraps: the inner event's JSON envelope (id, pubkey, sig, tags) and
// the escaping of its content.
const ClaimOverhead = 2 << 10

// KindGiftWrap is NIP-59's gift wrap, which carries Marmot Welcomes.
const KindGiftWrap = 1059

// MaxNIP44Payload is the longest NIP-44 v2 payload, base64: the largest
// plaintext (65,535 bytes) padded to 65,536, with version, nonce, length
// and MAC, is 65,603 bytes, 87,472 characters of base64. A gift wrap's
// content is one such payload, so a limit below it would refuse Welcomes
// of large groups that NIP-44 itself can carry.
const MaxNIP44Payload = 87472

func (l Limits) contentLimit(kind int) int {
	switch kind {
	case KindGroupEvent:
		return l.MaxGroupContentLength
	case KindSlotClaim:
		return l.MaxGroupContentLength + ClaimOverhead
	case KindGiftWrap:
		return max(l.MaxContentLength, MaxNIP44Payload)
	}
	return l.MaxContentLength
}
