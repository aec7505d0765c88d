package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// Every message costs its sender (issue 14 item 3): REQ, COUNT, CLOSE,
// AUTH and anything unreadable draw from the request buckets, EVENTs from
// the event buckets, per connection and per address, and each refusal says
// rate-limited in the message type the client is waiting for.
func TestMessagesCostTheirSender(t *testing.T) {
	limits := testLimits()
	limits.ConnRequestRate, limits.ConnRequestBurst = 0.001, 4
	limits.RequestRate, limits.RequestBurst = 0.001, 6
	limits.ConnEventRate, limits.ConnEventBurst = 0.001, 3
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	c := dial(t, r.url, nil)
	s := newSigner(t)

	// Four requests pass: a REQ, a COUNT, a CLOSE (no answer) and an
	// unknown message (NOTICE invalid:).
	c.send([]any{"REQ", "a", nostr.Filter{Kinds: []int{1}}})
	c.collect("a")
	c.send([]any{"COUNT", "n", nostr.Filter{Kinds: []int{1}}})
	if msg := c.read(); label(msg) != "COUNT" {
		t.Fatalf("COUNT answered %s", joinRaw(msg))
	}
	c.send([]any{"CLOSE", "a"})
	c.send([]any{"HELLO"})
	if msg := c.read(); label(msg) != "NOTICE" || !strings.HasPrefix(str(msg[1]), "invalid:") {
		t.Fatalf("unknown message answered %s", joinRaw(msg))
	}
	const onConn = "rate-limited: too many requests on this connection, slow down"
	c.send([]any{"REQ", "b", nostr.Filter{Kinds: []int{1}}})
	if msg := c.readClosed("b"); msg != onConn {
		t.Fatalf("fifth request: CLOSED %q", msg)
	}
	c.send([]any{"COUNT", "m", nostr.Filter{Kinds: []int{1}}})
	if msg := c.readClosed("m"); msg != onConn {
		t.Fatalf("COUNT over the limit: CLOSED %q", msg)
	}
	auth := authEvent(t, s, "whatever", r.url, 22242, 0)
	c.send([]any{"AUTH", auth})
	if got := c.readOK(); got.ok || got.id != auth.ID || got.msg != onConn {
		t.Fatalf("AUTH over the limit: %+v", got)
	}
	c.send([]any{"CLOSE", "x"})
	if msg := c.read(); label(msg) != "NOTICE" || str(msg[1]) != onConn {
		t.Fatalf("CLOSE over the limit: %s", joinRaw(msg))
	}

	// Events have their own buckets. Bad signatures are charged before
	// they are verified: three forged events use up the connection's
	// burst, and a good one after them is refused unverified.
	for i := range 3 {
		forged := s.event(t, 1, fmt.Sprint("forged ", i), nil, 0)
		forged.Sig = strings.Repeat("ab", 64)
		if got := c.publish(forged); got.ok || got.msg != "invalid: bad signature" {
			t.Fatalf("forged event %d: %+v", i, got)
		}
	}
	if got := c.publish(s.event(t, 1, "good", nil, 0)); got.ok || got.msg != "rate-limited: too many events on this connection, slow down" {
		t.Fatalf("event after the burst: %+v", got)
	}

	// The address bucket (6 requests) is shared: a second connection gets
	// the two left, then the address refusal.
	d := dial(t, r.url, nil)
	for _, id := range []string{"c1", "c2"} {
		d.send([]any{"REQ", id, nostr.Filter{Kinds: []int{1}}})
		d.collect(id)
	}
	d.send([]any{"REQ", "c3", nostr.Filter{Kinds: []int{1}}})
	if msg := d.readClosed("c3"); msg != "rate-limited: too many requests from your address, slow down" {
		t.Fatalf("request over the address limit: CLOSED %q", msg)
	}
	if n := counterValue(t, r.reg, "burrow_messages_rate_limited_total"); n != 6 {
		t.Fatalf("burrow_messages_rate_limited_total = %v, want 6", n)
	}
}

// IPv6 clients are grouped by prefix (default /64) for every per-address
// limit: here the connection cap.
func TestIPv6ClientsGroupedByPrefix(t *testing.T) {
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tt := range []struct {
		bits      int
		sameGroup bool
	}{{64, true}, {128, false}} {
		t.Run(fmt.Sprintf("/%d", tt.bits), func(t *testing.T) {
			limits := testLimits()
			limits.ConnectionsPerIP = 2
			limits.IPv6PrefixBits = tt.bits
			r := startRelay(t, Config{Limits: limits, TrustedProxies: proxy}, newTestStore(t))
			dial(t, r.url, xff("2001:db8:0:1::1"))
			dial(t, r.url, xff("2001:db8:0:1::2"))
			_, err := tryDial(r.url, xff("2001:db8:0:1:ffff::3"))
			var de *dialError
			if refused := errors.As(err, &de) && de.status == http.StatusTooManyRequests; refused != tt.sameGroup {
				t.Fatalf("third address in the /64: %v, want refused=%v", err, tt.sameGroup)
			}
			dial(t, r.url, xff("2001:db8:0:2::1")) // another /64
		})
	}
}

// The filter values of open subscriptions are capped per connection and
// per address; closing a subscription or a connection gives them back.
func TestFilterValueCaps(t *testing.T) {
	limits := testLimits()
	limits.MaxFilterValues = 10
	limits.MaxFilterValuesPerIP = 15
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	authors := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%064x", i+1)
		}
		return out
	}
	c := dial(t, r.url, nil)
	c.send([]any{"REQ", "big", nostr.Filter{Authors: authors(11)}})
	if msg := c.readClosed("big"); !strings.HasPrefix(msg, "invalid: a subscription may hold at most 10 filter values") {
		t.Fatalf("11 values: CLOSED %q", msg)
	}
	c.send([]any{"REQ", "a", nostr.Filter{Authors: authors(5), Kinds: []int{1}}}) // 6 values
	c.collect("a")
	c.send([]any{"REQ", "b", nostr.Filter{Authors: authors(5)}})
	if msg := c.readClosed("b"); !strings.HasPrefix(msg, "rate-limited: too many filter values in this connection's open subscriptions (max 10)") {
		t.Fatalf("6 + 5 values: CLOSED %q", msg)
	}
	c.send([]any{"CLOSE", "a"})
	c.send([]any{"REQ", "b", nostr.Filter{Authors: authors(5)}, nostr.Filter{}}) // 5 + 1
	c.collect("b")

	d := dial(t, r.url, nil)
	d.send([]any{"REQ", "d", nostr.Filter{Authors: authors(9)}}) // 6 + 9 = 15
	d.collect("d")
	e := dial(t, r.url, nil)
	e.send([]any{"REQ", "e", nostr.Filter{}})
	if msg := e.readClosed("e"); msg != "rate-limited: too many filter values in open subscriptions from your address (max 15)" {
		t.Fatalf("16th value from the address: CLOSED %q", msg)
	}
	_ = d.conn.Close()
	eventually(t, "the closed connection's values to be given back", func() bool {
		e.send([]any{"REQ", "e", nostr.Filter{}})
		msg := e.read()
		if label(msg) == "EOSE" {
			return true
		}
		if label(msg) != "CLOSED" {
			t.Fatalf("got %s", joinRaw(msg))
		}
		return false
	})
}

// Stored queries in flight are capped per address; a connection runs one
// at a time.
func TestStoredQueriesPerAddress(t *testing.T) {
	limits := testLimits()
	limits.MaxQueriesPerIP = 1
	st := &failingStore{Store: newTestStore(t), queryEntered: make(chan struct{}), queryRelease: make(chan struct{})}
	r := startRelay(t, Config{Limits: limits}, st)
	a, b := dial(t, r.url, nil), dial(t, r.url, nil)
	a.send([]any{"REQ", "slow", nostr.Filter{Kinds: []int{1}}})
	<-st.queryEntered
	b.send([]any{"REQ", "q", nostr.Filter{Kinds: []int{1}}})
	if msg := b.readClosed("q"); msg != "rate-limited: too many stored queries in flight from your address (max 1)" {
		t.Fatalf("second query from the address: CLOSED %q", msg)
	}
	b.send([]any{"COUNT", "n", nostr.Filter{Kinds: []int{1}}})
	if msg := b.readClosed("n"); !strings.HasPrefix(msg, "rate-limited: too many stored queries") {
		t.Fatalf("COUNT meanwhile: CLOSED %q", msg)
	}
	close(st.queryRelease)
	a.collect("slow")
	b.send([]any{"REQ", "q", nostr.Filter{Kinds: []int{1}}})
	b.collect("q")
}

// slowCountStore's Count waits for its context like a statement that never
// finishes, and records that the context carried a deadline.
type slowCountStore struct {
	storage.Store
	hadDeadline chan bool
}

func (s *slowCountStore) Count(ctx context.Context, _ nostr.Filter) (int64, error) {
	_, ok := ctx.Deadline()
	s.hadDeadline <- ok
	<-ctx.Done()
	return 0, ctx.Err()
}

// A COUNT is bounded in time: the store sees a deadline, and the client
// gets CLOSED error: once it passes.
func TestCountIsBoundedInTime(t *testing.T) {
	limits := testLimits()
	limits.CountTimeout = 200 * time.Millisecond
	st := &slowCountStore{Store: newTestStore(t), hadDeadline: make(chan bool, 1)}
	r := startRelay(t, Config{Limits: limits}, st)
	c := dial(t, r.url, nil)
	start := time.Now()
	c.send([]any{"COUNT", "n", nostr.Filter{Kinds: []int{1}}})
	if msg := c.readClosed("n"); msg != "error: counting took longer than 200ms; narrow the filter" {
		t.Fatalf("CLOSED %q", msg)
	}
	if !<-st.hadDeadline {
		t.Fatal("the store's context had no deadline")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("answered after %v, before the bound", d)
	}
	// The connection stays usable.
	c.send([]any{"REQ", "q", nostr.Filter{Kinds: []int{1}}})
	c.collect("q")
}

// A peer that stops answering pings is dropped after the pong timeout; one
// that reads (and so answers pings) stays.
func TestDeadPeersAreDropped(t *testing.T) {
	limits := testLimits()
	limits.PingInterval = 50 * time.Millisecond
	limits.PongTimeout = 300 * time.Millisecond
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	alive := dial(t, r.url, nil)
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		// gorilla-style clients answer pings while reading.
		for {
			_ = alive.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := alive.conn.ReadMessage(); err != nil {
				select {
				case <-stop:
					readErr <- nil
				default:
					readErr <- err
				}
				return
			}
		}
	}()
	dead, err := tryDial(r.url, nil) // never reads, so never pongs
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	eventually(t, "the silent peer to be dropped", func() bool {
		return counterValue(t, r.reg, "burrow_connections_open") == 1
	})
	time.Sleep(4 * limits.PongTimeout)
	if n := counterValue(t, r.reg, "burrow_connections_open"); n != 1 {
		t.Fatalf("%v connections open, want the reading one", n)
	}
	close(stop)
	_ = alive.conn.Close()
	if err := <-readErr; err != nil {
		t.Fatalf("the reading peer was dropped: %v", err)
	}
}
