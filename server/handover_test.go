package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// An event committed while the stored query runs is both a stored result
// and a buffered live event: it is sent once, before EOSE.
func TestHandoverCommittedDuringQuery(t *testing.T) {
	st := &failingStore{Store: newTestStore(t), queryEntered: make(chan struct{}), queryRelease: make(chan struct{})}
	r := startRelay(t, Config{}, st)
	sub, pub := dial(t, r.url, nil), dial(t, r.url, nil)
	s := newSigner(t)

	sub.send([]any{"REQ", "h", nostr.Filter{Kinds: []int{1}}})
	<-st.queryEntered // registered and buffering; the query has not run
	during := s.event(t, 1, "during", nil, 0)
	if got := pub.publish(during); !got.ok {
		t.Fatalf("publish: %+v", got)
	}
	close(st.queryRelease)
	stored := sub.collect("h")
	if len(stored) != 1 || stored[0].ID != during.ID {
		t.Fatalf("stored part %v, want the event once", stored)
	}
	after := s.event(t, 1, "after", nil, 0)
	pub.publish(after)
	if msg := sub.read(); label(msg) != "EVENT" || decodeEvent(t, msg[2]).ID != after.ID {
		t.Fatalf("got %s, want the next live event (no duplicate of the stored one)", joinRaw(msg))
	}
}

// An event committed before the query but broadcast after EOSE is not sent
// again live.
func TestHandoverBroadcastAfterEOSE(t *testing.T) {
	st := &failingStore{Store: newTestStore(t), pauseAfterCommit: true, saveEntered: make(chan struct{}), release: make(chan struct{})}
	r := startRelay(t, Config{}, st)
	sub, pub := dial(t, r.url, nil), dial(t, r.url, nil)
	s := newSigner(t)

	slow := s.event(t, 1, "committed, not yet broadcast", nil, 0)
	pub.send([]any{"EVENT", slow})
	<-st.saveEntered // stored; its broadcast waits
	sub.send([]any{"REQ", "h", nostr.Filter{Kinds: []int{1}}})
	if stored := sub.collect("h"); len(stored) != 1 || stored[0].ID != slow.ID {
		t.Fatalf("stored part %v, want the committed event", stored)
	}
	close(st.release)
	if got := pub.readOK(); !got.ok {
		t.Fatalf("publish: %+v", got)
	}
	next := s.event(t, 1, "next", nil, 0)
	pub.publish(next)
	if msg := sub.read(); label(msg) != "EVENT" || decodeEvent(t, msg[2]).ID != next.ID {
		t.Fatalf("got %s, want only the next event", joinRaw(msg))
	}
}

// Too many live events during a stored query: EOSE, then CLOSED, and the
// connection stays.
func TestHandoverBufferOverflow(t *testing.T) {
	limits := testLimits()
	limits.OutboundQueue = 16 // live buffer of 4
	st := &failingStore{Store: newTestStore(t), queryEntered: make(chan struct{}), queryRelease: make(chan struct{})}
	r := startRelay(t, Config{Limits: limits}, st)
	sub, pub := dial(t, r.url, nil), dial(t, r.url, nil)
	s := newSigner(t)
	sub.send([]any{"REQ", "h", nostr.Filter{Kinds: []int{1}, Limit: 1}})
	<-st.queryEntered
	for i := range 6 {
		pub.publish(s.event(t, 1, fmt.Sprint(i), nil, 0))
	}
	close(st.queryRelease)
	sub.collect("h")
	if msg := sub.read(); label(msg) != "CLOSED" || !strings.HasPrefix(str(msg[2]), "error:") {
		t.Fatalf("got %s, want CLOSED error:", joinRaw(msg))
	}
	sub.send([]any{"REQ", "again", nostr.Filter{Kinds: []int{1}, Limit: 2}})
	if got := sub.collect("again"); len(got) != 2 {
		t.Fatalf("resubscribe got %d events, want 2", len(got))
	}
}

func TestEventRateLimited(t *testing.T) {
	limits := testLimits()
	limits.EventBurst = 3
	limits.EventRate = 0.001
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	a, b := dial(t, r.url, nil), dial(t, r.url, nil)
	s := newSigner(t)
	for i := range 3 {
		if got := []*wsClient{a, b}[i%2].publish(s.event(t, 1, fmt.Sprint(i), nil, 0)); !got.ok {
			t.Fatalf("event %d: %+v", i, got)
		}
	}
	// The bucket is per address, shared by both connections.
	if got := b.publish(s.event(t, 1, "one too many", nil, 0)); got.ok || !strings.HasPrefix(got.msg, "rate-limited:") {
		t.Fatalf("fourth event %+v, want rate-limited:", got)
	}
}

// NIP-09 and NIP-40 through the store.
func TestDeletionAndExpiration(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c := dial(t, r.url, nil)
	s := newSigner(t)
	target := s.event(t, 1, "regret", nil, 0)
	c.publish(target)
	if got := c.publish(s.event(t, 5, "", nostr.Tags{{"e", target.ID}}, 0)); !got.ok {
		t.Fatalf("deletion: %+v", got)
	}
	c.send([]any{"REQ", "d", nostr.Filter{IDs: []string{target.ID}}})
	if got := c.collect("d"); len(got) != 0 {
		t.Fatal("deleted event still served")
	}
	if got := c.publish(target); got.ok || !strings.HasPrefix(got.msg, "blocked:") {
		t.Fatalf("re-publishing a deleted event: %+v, want blocked:", got)
	}
	other := newSigner(t)
	if got := c.publish(other.event(t, 5, "", nostr.Tags{{"e", c.storedID(t, s)}}, 0)); got.ok || !strings.HasPrefix(got.msg, "blocked:") {
		t.Fatalf("deleting another author's event: %+v, want blocked:", got)
	}

	soon := s.event(t, 1, "short-lived", nostr.Tags{{"expiration", fmt.Sprint(time.Now().Add(2 * time.Second).Unix())}}, 0)
	c.publish(soon)
	c.send([]any{"REQ", "x1", nostr.Filter{IDs: []string{soon.ID}}})
	if got := c.collect("x1"); len(got) != 1 {
		t.Fatal("unexpired event not served")
	}
	time.Sleep(3 * time.Second)
	c.send([]any{"REQ", "x2", nostr.Filter{IDs: []string{soon.ID}}})
	if got := c.collect("x2"); len(got) != 0 {
		t.Fatal("expired event still served")
	}
}

// storedID publishes a fresh event by s and returns its id.
func (c *wsClient) storedID(t *testing.T, s signer) string {
	ev := s.event(t, 1, "keep me", nil, 0)
	if got := c.publish(ev); !got.ok {
		t.Fatalf("publish: %+v", got)
	}
	return ev.ID
}

func TestSweeperRuns(t *testing.T) {
	st := &failingStore{Store: newTestStore(t)}
	r := startRelay(t, Config{SweepInterval: 20 * time.Millisecond}, st)
	eventually(t, "repeated sweeps", func() bool { return st.sweeps.Load() >= 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	n := st.sweeps.Load()
	time.Sleep(100 * time.Millisecond)
	if st.sweeps.Load() != n {
		t.Fatal("sweeper still running after Shutdown")
	}
}

// TestLateRemoteCopyOfAStoredEventIsNotSentTwice: an event another instance
// committed before a subscription's stored query can reach this instance
// after the query (through the bus) and even after local live events; it
// carries no local commit ticket and must still be recognised as sent.
func TestLateRemoteCopyOfAStoredEventIsNotSentTwice(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	pub := dial(t, r.url, nil)
	s := newSigner(t)
	stored := s.event(t, 1, "stored", nil, 0)
	pub.publish(stored)

	c := dial(t, r.url, nil)
	c.send([]any{"REQ", "sub", nostr.Filter{Authors: []string{s.pk}}})
	if got := c.collect("sub"); len(got) != 1 || got[0].ID != stored.ID {
		t.Fatalf("stored results %v", eventIDs(got))
	}
	local := s.event(t, 1, "local", nil, 0)
	pub.publish(local)
	if msg := c.read(); label(msg) != "EVENT" || decodeEvent(t, msg[2]).ID != local.ID {
		t.Fatalf("got %s, want the live local event", joinRaw(msg))
	}
	r.srv.broadcaster.Broadcast(Delivery{Event: stored}) // the late copy, Ticket 0
	next := s.event(t, 1, "next", nil, 0)
	pub.publish(next)
	if msg := c.read(); label(msg) != "EVENT" || decodeEvent(t, msg[2]).ID != next.ID {
		t.Fatalf("got %s, want the next live event (the stored one was sent again)", joinRaw(msg))
	}
}
