package server

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// Live delivery never leaks a deleted KeyPackage (issue 9 item 3): once the
// deleting event has its OK true, no subscriber receives the old version,
// not from a broadcast still waiting behind a full outbox, not from a copy
// queued for a slow subscriber, not from a copy in flight from another
// instance.

// serverConn finds the relay's side of a client connection.
func serverConn(t *testing.T, r *testRelay, client *websocket.Conn) *conn {
	t.Helper()
	var found *conn
	eventually(t, "the relay to register the connection", func() bool {
		r.srv.conns.mu.Lock()
		defer r.srv.conns.mu.Unlock()
		for c := range r.srv.conns.m {
			if c.ws.RemoteAddr().String() == client.LocalAddr().String() {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// holdOutbox makes the client a slow reader that has stopped: it reads
// nothing, the relay's send buffer for it is fixed as small as the kernel
// allows (no autotuning, so the socket cannot soak up what follows), and
// c's outbound queue is filled past half its byte bound. Answers to c then
// wait, and live events to c queue behind. The returned func gives the
// socket a large buffer again, for the client to read what waited.
func holdOutbox(t *testing.T, c *conn) (release func()) {
	t.Helper()
	if err := c.ws.NetConn().(*net.TCPConn).SetWriteBuffer(1); err != nil {
		t.Fatal(err)
	}
	filler := plainMsg([]byte(`["NOTICE","` + strings.Repeat("f", 64<<10) + `"]`))
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.out.mu.Lock()
		queued, limit := c.out.bytes, c.out.limitBytes
		c.out.mu.Unlock()
		if queued >= limit*6/10 {
			return func() { _ = c.ws.NetConn().(*net.TCPConn).SetWriteBuffer(4 << 20) }
		}
		if time.Now().After(deadline) {
			t.Fatal("the outbox never filled")
		}
		if queued+filler.size() > limit*9/10 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if !c.out.pushLive(filler) {
			t.Fatal("filling the outbox overflowed it")
		}
	}
}

// drainUntilOK reads everything queued for c until the OK for id.
func drainUntilOK(t *testing.T, c *wsClient, id string) okResult {
	t.Helper()
	for {
		msg := c.read()
		if label(msg) == "OK" && str(msg[1]) == id {
			var r okResult
			r.id = id
			_ = json.Unmarshal(msg[2], &r.ok)
			r.msg = str(msg[3])
			return r
		}
	}
}

// expectOnly reads c's live events for sub: want arrives, and within a
// while after it nothing else (above all not the deleted version).
func expectOnly(t *testing.T, c *wsClient, sub string, want, deleted *nostr.Event) {
	t.Helper()
	got := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	quietUntil := time.Time{}
	for {
		wait := deadline
		if !quietUntil.IsZero() {
			wait = quietUntil
		}
		_ = c.conn.SetReadDeadline(wait)
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			if quietUntil.IsZero() {
				t.Fatalf("the new version never arrived: %v", err)
			}
			return
		}
		var msg []json.RawMessage
		if json.Unmarshal(b, &msg) != nil || label(msg) != "EVENT" {
			continue // fillers and other answers
		}
		ev := decodeEvent(t, msg[2])
		switch {
		case str(msg[1]) != sub:
		case ev.ID == deleted.ID:
			t.Fatalf("subscription %s received the deleted %s after its deletion's OK", sub, ev.ID[:12])
		case ev.ID == want.ID:
			got[ev.ID] = true
			quietUntil = time.Now().Add(500 * time.Millisecond)
		default:
			t.Fatalf("unexpected event %s", ev.ID[:12])
		}
	}
}

// keyPackagePair is an author's KeyPackage and its replacement in the same
// 30443 slot (the replacement deletes the first when saved).
func keyPackagePair(t *testing.T) (author signer, old, replacement *nostr.Event) {
	author = newSigner(t)
	old = author.event(t, 30443, "first", nostr.Tags{{"d", "slot"}}, nostr.Now()-10)
	replacement = author.event(t, 30443, "second", nostr.Tags{{"d", "slot"}}, nostr.Now())
	return author, old, replacement
}

func subscribeKeyPackages(t *testing.T, url string, author signer) *wsClient {
	t.Helper()
	s := dial(t, url, nil)
	s.send([]any{"REQ", "kp", nostr.Filter{Kinds: []int{30443}, Authors: []string{author.pk}}})
	if got := s.collect("kp"); len(got) != 0 {
		t.Fatalf("stored KeyPackages before the test: %d", len(got))
	}
	return s
}

// The publisher's outbox is full, so its OK (and, before the fix, its
// broadcast after the OK) waits; meanwhile the author replaces the
// KeyPackage on a second connection.
func TestReplacedKeyPackageNotBroadcastLate(t *testing.T) {
	limits := testLimits()
	limits.OutboundBytes = 1 << 20
	store := newTestStore(t)
	r := startRelay(t, Config{Limits: limits}, store)
	author, kp1, kp2 := keyPackagePair(t)
	sub := subscribeKeyPackages(t, r.url, author)

	p := dial(t, r.url, nil)
	release := holdOutbox(t, serverConn(t, r, p.conn))
	p.send([]any{"EVENT", kp1})
	eventually(t, "the first version to be stored", func() bool {
		n, err := store.Count(context.Background(), nostr.Filter{IDs: []string{kp1.ID}})
		return err == nil && n == 1
	})
	if got := dial(t, r.url, nil).publish(kp2); !got.ok {
		t.Fatalf("replacement: %+v", got)
	}
	release()
	drainUntilOK(t, p, kp1.ID) // the publisher reads again: its OK, then its broadcast
	expectOnly(t, sub, "kp", kp2, kp1)
}

// The subscriber's own outbox is full: the first version waits in it when
// the replacement deletes it, and is dropped before it is written.
func TestDeletedKeyPackageDroppedFromSubscriberQueue(t *testing.T) {
	limits := testLimits()
	limits.OutboundBytes = 1 << 20
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	author, kp1, kp2 := keyPackagePair(t)
	sub := subscribeKeyPackages(t, r.url, author)
	release := holdOutbox(t, serverConn(t, r, sub.conn))
	pub := dial(t, r.url, nil)
	if got := pub.publish(kp1); !got.ok {
		t.Fatalf("first version: %+v", got)
	}
	eventually(t, "the first version to be handed to the subscriber's queue", func() bool {
		return r.srv.tracker.oldestInFlight() > r.srv.tracker.lastIssued()
	})
	if got := pub.publish(kp2); !got.ok {
		t.Fatalf("replacement: %+v", got)
	}
	release()
	expectOnly(t, sub, "kp", kp2, kp1)
	if n := counterValue(t, r.reg, "burrow_deleted_deliveries_dropped_total"); n != 1 {
		t.Fatalf("burrow_deleted_deliveries_dropped_total = %v, want 1", n)
	}
}

// wire stands in for the Redis bus between two instances: what one
// instance sends waits, in order, until the test delivers it.
type wire struct {
	mu      sync.Mutex
	pending []func()
}

func (w *wire) send(f func()) {
	w.mu.Lock()
	w.pending = append(w.pending, f)
	w.mu.Unlock()
}

// waitPending waits until n deliveries wait on the wire.
func (w *wire) waitPending(t *testing.T, n int) {
	t.Helper()
	eventually(t, "deliveries on the wire", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.pending) >= n
	})
}

func (w *wire) deliver() {
	w.mu.Lock()
	fs := w.pending
	w.pending = nil
	w.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// busOut broadcasts locally and sends a copy over the wire, as the ordering
// layer does with the bus.
type busOut struct {
	local Broadcaster
	w     *wire
	peer  **testRelay
}

func (b busOut) Broadcast(d Delivery) {
	b.local.Broadcast(d)
	b.w.send(func() { (*b.peer).srv.broadcaster.Broadcast(Delivery{Event: d.Event, Seq: d.Seq}) })
}

// twoInstances starts two relays on one store, joined by a wire carrying
// events and deletions both ways.
func twoInstances(t *testing.T, limits Config) (a, b *testRelay, w *wire) {
	w = &wire{}
	store := newTestStore(t)
	cfg := func(peer **testRelay) Config {
		c := limits
		c.BroadcastVia = func(local Broadcaster) (Broadcaster, GroupWatcher) {
			return busOut{local: local, w: w, peer: peer}, nil
		}
		c.PublishDeletions = func(ids []string) { w.send(func() { (*peer).srv.RemoteDeletions(ids) }) }
		return c
	}
	a = startRelay(t, cfg(&b), store)
	b = startRelay(t, cfg(&a), store)
	return a, b, w
}

// A copy of the first version is in flight from instance a when a deletes
// it; instance b must not deliver it (the copy arrives before the deletion
// notice, so b checks storage).
func TestRemoteCopyOfDeletedKeyPackageNotDelivered(t *testing.T) {
	a, b, w := twoInstances(t, Config{})
	author, kp1, kp2 := keyPackagePair(t)
	sub := subscribeKeyPackages(t, b.url, author)
	pub := dial(t, a.url, nil)
	if got := pub.publish(kp1); !got.ok {
		t.Fatalf("first version: %+v", got)
	}
	if got := pub.publish(kp2); !got.ok {
		t.Fatalf("replacement: %+v", got)
	}
	w.waitPending(t, 3) // kp1's copy, the deletion of kp1, kp2's copy
	w.deliver()
	expectOnly(t, sub, "kp", kp2, kp1)
}

// The publisher's outbox on instance a is full; the author replaces the
// KeyPackage on instance b, where the subscriber is.
func TestKeyPackageReplacedOnOtherInstanceNotBroadcastLate(t *testing.T) {
	limits := testLimits()
	limits.OutboundBytes = 1 << 20
	a, b, w := twoInstances(t, Config{Limits: limits})
	author, kp1, kp2 := keyPackagePair(t)
	sub := subscribeKeyPackages(t, b.url, author)

	p := dial(t, a.url, nil)
	release := holdOutbox(t, serverConn(t, a, p.conn))
	p.send([]any{"EVENT", kp1})
	eventually(t, "the first version to be stored", func() bool {
		n, err := a.store.Count(context.Background(), nostr.Filter{IDs: []string{kp1.ID}})
		return err == nil && n == 1
	})
	if got := dial(t, b.url, nil).publish(kp2); !got.ok {
		t.Fatalf("replacement: %+v", got)
	}
	release()
	drainUntilOK(t, p, kp1.ID)
	// b's deletion of kp1 and copy of kp2, then a's late copy of kp1.
	w.waitPending(t, 3)
	w.deliver()
	expectOnly(t, sub, "kp", kp2, kp1)
}
