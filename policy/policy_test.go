package policy

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

func TestDefaultLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("DefaultLimits invalid: %v", err)
	}
	d := DefaultLimits()
	if d.MaxLimit != 500 || d.ConnectionsPerIP != 64 || d.OutboundQueue < 1000 {
		t.Fatalf("defaults %+v differ from the documented ones", d)
	}
}

func TestLimitsValidateRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Limits)
	}{
		{"zero message length", func(l *Limits) { l.MaxMessageLength = 0 }},
		{"negative subscriptions", func(l *Limits) { l.MaxSubscriptions = -1 }},
		{"zero filters", func(l *Limits) { l.MaxFilters = 0 }},
		{"zero max limit", func(l *Limits) { l.MaxLimit = 0 }},
		{"zero subid length", func(l *Limits) { l.MaxSubIDLength = 0 }},
		{"zero tags", func(l *Limits) { l.MaxEventTags = 0 }},
		{"zero content", func(l *Limits) { l.MaxContentLength = 0 }},
		{"content larger than message", func(l *Limits) { l.MaxContentLength = l.MaxMessageLength + 1 }},
		{"zero group content", func(l *Limits) { l.MaxGroupContentLength = 0 }},
		{"claim of a largest group event exceeds a message", func(l *Limits) { l.MaxGroupContentLength = l.MaxMessageLength }},
		{"zero group rate", func(l *Limits) { l.GroupRate = 0 }},
		{"zero group burst", func(l *Limits) { l.GroupBurst = 0 }},
		{"zero future bound", func(l *Limits) { l.CreatedAtFuture = 0 }},
		{"negative past bound", func(l *Limits) { l.CreatedAtPast = -time.Second }},
		{"zero connections", func(l *Limits) { l.ConnectionsPerIP = 0 }},
		{"zero rate", func(l *Limits) { l.EventRate = 0 }},
		{"zero burst", func(l *Limits) { l.EventBurst = 0 }},
		{"tiny queue", func(l *Limits) { l.OutboundQueue = 4 }},
		{"zero write timeout", func(l *Limits) { l.WriteTimeout = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := DefaultLimits()
			tt.edit(&l)
			if err := l.Validate(); !errors.Is(err, ErrInvalidLimits) {
				t.Fatalf("Validate = %v, want ErrInvalidLimits", err)
			}
		})
	}
}

func TestEventShape(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := DefaultLimits()
	l.MaxEventTags = 2
	l.MaxContentLength = 10
	l.CreatedAtPast = time.Hour
	rule := l.EventShape(func() time.Time { return now })
	ts := func(d time.Duration) nostr.Timestamp { return nostr.Timestamp(now.Add(d).Unix()) }
	tests := []struct {
		name   string
		ev     nostr.Event
		prefix string // "" = accepted
	}{
		{"fine", nostr.Event{CreatedAt: ts(0), Content: "hi"}, ""},
		{"too many tags", nostr.Event{CreatedAt: ts(0), Tags: nostr.Tags{{"a", "1"}, {"b", "2"}, {"c", "3"}}}, "invalid:"},
		{"content too long", nostr.Event{CreatedAt: ts(0), Content: strings.Repeat("x", 11)}, "invalid:"},
		{"at the future bound", nostr.Event{CreatedAt: ts(l.CreatedAtFuture)}, ""},
		{"past the future bound", nostr.Event{CreatedAt: ts(l.CreatedAtFuture + time.Second)}, "invalid:"},
		{"too old", nostr.Event{CreatedAt: ts(-2 * time.Hour)}, "invalid:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reject, msg := rule(context.Background(), &tt.ev)
			if reject != (tt.prefix != "") || !strings.HasPrefix(msg, tt.prefix) {
				t.Fatalf("got (%v, %q), want prefix %q", reject, msg, tt.prefix)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	marmot := []int{0, 5, 62, 443, 30443, 445, 1059, 10002, 10050, 10051, 20445}
	tests := []struct {
		setting    string
		allowed    []int
		refused    []int
		restricted bool
	}{
		{"all", []int{1, 445, 30023, 65535}, nil, false},
		{"", []int{1}, nil, false},
		{"marmot", marmot, []int{1, 3, 4, 444, 1984, 30023, 22242}, true},
		{"MARMOT", marmot, []int{1}, true},
	}
	for _, tt := range tests {
		k, err := ParseKinds(tt.setting)
		if err != nil {
			t.Fatalf("ParseKinds(%q): %v", tt.setting, err)
		}
		if k.Restricted() != tt.restricted {
			t.Fatalf("%q: Restricted = %v", tt.setting, k.Restricted())
		}
		rule := k.Rule()
		for _, kind := range tt.allowed {
			if reject, msg := rule(context.Background(), &nostr.Event{Kind: kind}); reject {
				t.Fatalf("%q refuses kind %d: %s", tt.setting, kind, msg)
			}
		}
		for _, kind := range tt.refused {
			if reject, msg := rule(context.Background(), &nostr.Event{Kind: kind}); !reject || !strings.HasPrefix(msg, "blocked:") {
				t.Fatalf("%q accepts kind %d (%q)", tt.setting, kind, msg)
			}
		}
	}
	if _, err := ParseKinds("some"); err == nil {
		t.Fatal("ParseKinds accepted an unknown setting")
	}
	var zero Kinds
	if !zero.Allows(12345) || zero.String() != "all" {
		t.Fatal("zero Kinds must allow everything")
	}
}

func TestProtectedEvents(t *testing.T) {
	author := strings.Repeat("a", 64)
	other := strings.Repeat("b", 64)
	prot := &nostr.Event{PubKey: author, Tags: nostr.Tags{{"-"}}}
	plain := &nostr.Event{PubKey: author, Tags: nostr.Tags{{"-", "not the marker"}}}
	tests := []struct {
		name   string
		ev     *nostr.Event
		authed string
		prefix string
	}{
		{"plain event, no auth", plain, "", ""},
		{"protected, no auth", prot, "", "auth-required:"},
		{"protected, other key", prot, other, "restricted:"},
		{"protected, author", prot, author, ""},
	}
	for _, tt := range tests {
		ctx := WithConn(context.Background(), Conn{AuthedPubKey: tt.authed})
		reject, msg := ProtectedEvents(ctx, tt.ev)
		if reject != (tt.prefix != "") || !strings.HasPrefix(msg, tt.prefix) {
			t.Fatalf("%s: got (%v, %q), want prefix %q", tt.name, reject, msg, tt.prefix)
		}
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestTokenBucket(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	tb := NewTokenBucket(2, 3, clock.now)
	ctx := context.Background()
	allow := func(key string) bool {
		ok, err := tb.Allow(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for i := range 3 {
		if !allow("a") {
			t.Fatalf("burst call %d refused", i)
		}
	}
	if allow("a") {
		t.Fatal("call beyond the burst allowed")
	}
	if !allow("b") {
		t.Fatal("another key shares a's bucket")
	}
	clock.t = clock.t.Add(500 * time.Millisecond) // one token back
	if !allow("a") || allow("a") {
		t.Fatal("refill is not rate tokens per second")
	}
	clock.t = clock.t.Add(time.Hour)
	for i := range 3 {
		if !allow("a") {
			t.Fatalf("after idling, call %d refused", i)
		}
	}
	if allow("a") {
		t.Fatal("idle refill exceeded the burst")
	}
}

// The defaults let one address send 5,000 events at once (8 connections
// share the address) and then keep pipelining.
func TestDefaultEventRateAllowsABusyClient(t *testing.T) {
	l := DefaultLimits()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	rule := EventRateLimit(NewTokenBucket(l.EventRate, l.EventBurst, clock.now))
	ctx := WithConn(context.Background(), Conn{IP: netip.MustParseAddr("192.0.2.7")})
	for i := range 6000 {
		if reject, msg := rule(ctx, &nostr.Event{}); reject {
			t.Fatalf("event %d refused: %s", i, msg)
		}
	}
	limited := 0
	for range l.EventBurst {
		if reject, msg := rule(ctx, &nostr.Event{}); reject {
			if !strings.HasPrefix(msg, "rate-limited:") {
				t.Fatalf("refusal %q lacks rate-limited:", msg)
			}
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("the limit never applies")
	}
}

type brokenLimiter struct{}

func (brokenLimiter) Allow(context.Context, string) (bool, error) {
	return false, errors.New("redis down")
}

func TestEventRateLimitFailsOpen(t *testing.T) {
	ctx := WithConn(context.Background(), Conn{IP: netip.MustParseAddr("192.0.2.7")})
	if reject, _ := EventRateLimit(brokenLimiter{})(ctx, &nostr.Event{}); reject {
		t.Fatal("a failing limiter refused an event")
	}
}

func TestConnCounter(t *testing.T) {
	c := NewConnCounter(2)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if !c.Acquire(a) || !c.Acquire(a) || c.Acquire(a) {
		t.Fatal("cap of 2 not enforced")
	}
	if !c.Acquire(b) {
		t.Fatal("another address shares the count")
	}
	c.Release(a)
	if !c.Acquire(a) {
		t.Fatal("released slot not reusable")
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer, header ignored", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted peer, no header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"trusted peer, one hop", "10.1.2.3:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"forged left entries ignored", "10.1.2.3:5000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", "10.1.2.3:5000", []string{"203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"several header lines", "10.1.2.3:5000", []string{"1.2.3.4", "203.0.113.9, 10.0.0.7"}, "203.0.113.9"},
		{"garbage hop stops at last trusted", "10.1.2.3:5000", []string{"203.0.113.9, junk"}, "10.1.2.3"},
		{"all trusted", "10.1.2.3:5000", []string{"10.4.4.4"}, "10.4.4.4"},
		{"ipv6 peer", "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"mapped ipv4 peer", "[::ffff:198.51.100.1]:80", nil, "198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r, trusted); got.String() != tt.want {
				t.Fatalf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestIPBlocklist(t *testing.T) {
	b := NewIPBlocklist()
	ip := netip.MustParseAddr("192.0.2.5")
	b.Block(netip.MustParseAddr("::ffff:192.0.2.5"), "spam")
	if !b.Blocked(ip) {
		t.Fatal("mapped address not normalised")
	}
	if l := b.List(); len(l) != 1 || l[0].Reason != "spam" {
		t.Fatalf("List = %v", l)
	}
	b.Unblock(ip)
	if b.Blocked(ip) {
		t.Fatal("still blocked")
	}
}
