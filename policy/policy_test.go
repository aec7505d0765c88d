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
		{"zero connection event rate", func(l *Limits) { l.ConnEventRate = 0 }},
		{"zero connection event burst", func(l *Limits) { l.ConnEventBurst = 0 }},
		{"zero request rate", func(l *Limits) { l.RequestRate = 0 }},
		{"zero request burst", func(l *Limits) { l.RequestBurst = 0 }},
		{"zero connection request rate", func(l *Limits) { l.ConnRequestRate = 0 }},
		{"zero connection request burst", func(l *Limits) { l.ConnRequestBurst = 0 }},
		{"zero IPv6 prefix", func(l *Limits) { l.IPv6PrefixBits = 0 }},
		{"IPv6 prefix over 128", func(l *Limits) { l.IPv6PrefixBits = 129 }},
		{"zero filter values", func(l *Limits) { l.MaxFilterValues = 0 }},
		{"filter values per IP below per connection", func(l *Limits) { l.MaxFilterValuesPerIP = l.MaxFilterValues - 1 }},
		{"zero queries per IP", func(l *Limits) { l.MaxQueriesPerIP = 0 }},
		{"zero count timeout", func(l *Limits) { l.CountTimeout = 0 }},
		{"tiny outbound bytes", func(l *Limits) { l.OutboundBytes = 1 << 10 }},
		{"total outbound below one connection", func(l *Limits) { l.OutboundTotalBytes = l.OutboundBytes - 1 }},
		{"zero ping interval", func(l *Limits) { l.PingInterval = 0 }},
		{"pong timeout not above ping interval", func(l *Limits) { l.PongTimeout = l.PingInterval }},
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

// The defaults let one address send 5,000 events at once over 8
// connections, and one connection pipeline 1,000 group events, then keep
// going at the sustained rates; past the bursts, refusals say rate-limited.
func TestDefaultMeterAllowsABusyClient(t *testing.T) {
	l := DefaultLimits()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	m := NewMeter(l, NewTokenBucket(l.EventRate, l.EventBurst, clock.now), NewTokenBucket(l.RequestRate, l.RequestBurst, clock.now))
	ctx := context.Background()
	addr := netip.MustParseAddr("192.0.2.7")
	conns := make([]*ConnMeter, 8)
	for i := range conns {
		conns[i] = m.Conn(addr)
		conns[i].events.now, conns[i].requests.now = clock.now, clock.now
	}
	for i := range 5000 {
		if msg := conns[i%8].Charge(ctx, true); msg != "" {
			t.Fatalf("event %d refused: %s", i, msg)
		}
	}
	one := m.Conn(netip.MustParseAddr("192.0.2.8"))
	one.events.now, one.requests.now = clock.now, clock.now
	for i := range 1000 {
		if msg := one.Charge(ctx, true); msg != "" {
			t.Fatalf("pipelined event %d refused: %s", i, msg)
		}
	}
	// A connection opening its subscriptions: 200 REQs at once.
	for i := range 200 {
		if msg := one.Charge(ctx, false); msg != "" {
			t.Fatalf("request %d refused: %s", i, msg)
		}
	}
	// Sustained: one minute at the per-connection rates passes.
	for range 60 * 10 {
		clock.t = clock.t.Add(100 * time.Millisecond)
		for range int(l.ConnEventRate / 10) {
			if msg := one.Charge(ctx, true); msg != "" {
				t.Fatalf("sustained events refused: %s", msg)
			}
		}
	}
	limited := ""
	for range l.ConnEventBurst + 1 {
		if msg := one.Charge(ctx, true); msg != "" {
			limited = msg
			break
		}
	}
	if limited != "rate-limited: too many events on this connection, slow down" {
		t.Fatalf("past the connection burst: %q", limited)
	}
}

// The address bucket is shared by every connection of an address; the
// connection bucket is charged first; events and requests are separate.
func TestMeterBuckets(t *testing.T) {
	l := DefaultLimits()
	l.EventBurst, l.EventRate = 3, 0.001
	l.RequestBurst, l.RequestRate = 2, 0.001
	l.ConnRequestBurst, l.ConnRequestRate = 1, 0.001
	m := NewMeter(l, nil, nil)
	ctx := context.Background()
	a := netip.MustParseAddr("192.0.2.1")
	c1, c2 := m.Conn(a), m.Conn(a)
	for i, c := range []*ConnMeter{c1, c2, c1} {
		if msg := c.Charge(ctx, true); msg != "" {
			t.Fatalf("event %d: %s", i, msg)
		}
	}
	if msg := c2.Charge(ctx, true); msg != "rate-limited: too many events from your address, slow down" {
		t.Fatalf("fourth event from the address: %q", msg)
	}
	if msg := c1.Charge(ctx, false); msg != "" {
		t.Fatalf("first request: %q (events and requests share a bucket?)", msg)
	}
	if msg := c1.Charge(ctx, false); msg != "rate-limited: too many requests on this connection, slow down" {
		t.Fatalf("second request on one connection: %q", msg)
	}
	// The refusal above cost the address nothing: c2 still gets the
	// address's second request token.
	if msg := c2.Charge(ctx, false); msg != "" {
		t.Fatalf("request on the second connection: %q", msg)
	}
	if msg := m.Conn(netip.MustParseAddr("192.0.2.2")).Charge(ctx, true); msg != "" {
		t.Fatalf("another address shares the bucket: %q", msg)
	}
}

type brokenLimiter struct{}

func (brokenLimiter) Allow(context.Context, string) (bool, error) {
	return false, errors.New("redis down")
}

func TestMeterFailsOpen(t *testing.T) {
	m := NewMeter(DefaultLimits(), brokenLimiter{}, brokenLimiter{})
	c := m.Conn(netip.MustParseAddr("192.0.2.7"))
	if msg := c.Charge(context.Background(), true); msg != "" {
		t.Fatalf("a failing limiter refused an event: %q", msg)
	}
	if msg := c.Charge(context.Background(), false); msg != "" {
		t.Fatalf("a failing limiter refused a request: %q", msg)
	}
}

func TestGroupAddr(t *testing.T) {
	tests := []struct {
		ip   string
		bits int
		want string
	}{
		{"192.0.2.7", 64, "192.0.2.7"},
		{"::ffff:192.0.2.7", 64, "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
	}
	for _, tt := range tests {
		if got := GroupAddr(netip.MustParseAddr(tt.ip), tt.bits); got.String() != tt.want {
			t.Errorf("GroupAddr(%s, %d) = %s, want %s", tt.ip, tt.bits, got, tt.want)
		}
	}
}

func TestAddrQuota(t *testing.T) {
	q := NewAddrQuota(5)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if !q.Take(a, 2) || !q.Take(a, 3) || q.Take(a, 1) {
		t.Fatal("cap of 5 not enforced")
	}
	if !q.Take(b, 5) {
		t.Fatal("another address shares the count")
	}
	q.Give(a, 2)
	if q.Take(a, 3) || !q.Take(a, 2) {
		t.Fatal("given back amount not exactly reusable")
	}
	q.Give(a, 5)
	q.Give(b, 5)
	if len(q.used) != 0 {
		t.Fatalf("entries left after everything was given back: %v", q.used)
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
