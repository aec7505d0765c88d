package redisbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/redis/go-redis/v9"

	"github.com/burrow-relay/burrow/internal/testsvc"
)

func TestMain(m *testing.M) { testsvc.Main(m) }

// client is a Redis client for url, closed when the test ends.
func client(t *testing.T, url string) *redis.Client { return testsvc.RedisClient(t, url) }

// event returns a kind 445 event of group h by pk with a correct id and a
// placeholder sig: the bus checks the id, not the signature, and signing
// thousands of events under -race takes seconds.
func event(pk, h string, i int) *nostr.Event {
	ev := &nostr.Event{
		PubKey:    pk,
		Kind:      445,
		CreatedAt: nostr.Timestamp(1_700_000_000 + i),
		Tags:      nostr.Tags{{"h", h}},
		Content:   fmt.Sprintf("payload %d", i),
		Sig:       strings.Repeat("5a", 64),
	}
	ev.ID = ev.GetID()
	return ev
}

// newPK returns a random public key.
func newPK() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// running is a Bus with Run active; got receives what Run delivers.
type running struct {
	*Bus
	got     chan Message
	stop    context.CancelFunc
	runDone chan error
}

func start(t *testing.T, c *redis.Client, queue int) *running {
	t.Helper()
	b, err := New(Config{Client: c, Channel: "test:" + t.Name(), QueueSize: queue})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Bus: b, got: make(chan Message, 20000), stop: cancel, runDone: make(chan error, 1)}
	go func() { r.runDone <- b.Run(ctx, func(m Message) { r.got <- m }) }()
	t.Cleanup(func() {
		cancel()
		_ = b.Close()
		<-r.runDone
	})
	waitFor(t, 10*time.Second, "subscription", b.Connected)
	return r
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func recv(t *testing.T, ch <-chan Message, d time.Duration) Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
		return Message{}
	}
}

func TestNewRejectsNilClient(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a client succeeded")
	}
}

// Two instances on one Redis see each other's messages, all of them, in
// publish order, and never their own.
func TestTwoBusesDeliverInOrder(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	a, b := start(t, c, 0), start(t, c, 0)
	pkA, pkB := newPK(), newPK()
	const n = 1000
	evA, evB := make([]*nostr.Event, n), make([]*nostr.Event, n)
	for i := range n {
		evA[i], evB[i] = event(pkA, "aa", i), event(pkB, "bb", i)
	}
	var wg sync.WaitGroup
	for _, p := range []struct {
		bus *running
		evs []*nostr.Event
	}{{a, evA}, {b, evB}} {
		wg.Go(func() {
			for i, ev := range p.evs {
				p.bus.Publish(Message{Event: ev, Seq: int64(i + 1)})
			}
		})
	}
	wg.Wait()
	for _, tc := range []struct {
		name   string
		bus    *running
		fromPK string
		want   []*nostr.Event
	}{{"a gets b's", a, pkB, evB}, {"b gets a's", b, pkA, evA}} {
		for i := range n {
			m := recv(t, tc.bus.got, 10*time.Second)
			if m.Event.PubKey != tc.fromPK {
				t.Fatalf("%s: message %d is the bus's own", tc.name, i)
			}
			if m.Event.ID != tc.want[i].ID || m.Seq != int64(i+1) {
				t.Fatalf("%s: message %d has seq %d id %s, want seq %d id %s", tc.name, i, m.Seq, m.Event.ID, i+1, tc.want[i].ID)
			}
		}
	}
	if d := a.Dropped() + b.Dropped(); d != 0 {
		t.Fatalf("Dropped = %d with Redis up", d)
	}
}

// A bus alone on the channel receives nothing of its own: a marker from a
// second bus, sent after Redis has taken all of the first's messages,
// is the first thing delivered.
func TestSkipsOwn(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	a, other := start(t, c, 0), start(t, c, 0)
	pk := newPK()
	for i := range 100 {
		a.Publish(Message{Event: event(pk, "aa", i)})
	}
	// other receiving a's last message means Redis has published them all.
	for range 100 {
		recv(t, other.got, 10*time.Second)
	}
	marker := event(pk, "aa", 1000)
	other.Publish(Message{Event: marker})
	if m := recv(t, a.got, 10*time.Second); m.Event.ID != marker.ID {
		t.Fatalf("first delivery is %s, want the other bus's marker", m.Event.ID)
	}
}

func TestGarbageIgnored(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	a, other := start(t, c, 0), start(t, c, 0)
	pk := newPK()
	good, err := encode([idLen]byte{9}, Message{Event: event(pk, "aa", 1), Seq: 3})
	if err != nil {
		t.Fatal(err)
	}
	garbage := [][]byte{
		{},
		[]byte("hello"),
		append([]byte{2}, good[1:]...), // unknown version
		good[:len(good)-1],             // truncated JSON
		append(good[:1+idLen:1+idLen], 0xff, 0xff), // unterminated varint
		[]byte(`{"i":"x","s":1,"e":{}}`),
	}
	for _, g := range garbage {
		if err := c.Publish(context.Background(), a.channel, g).Err(); err != nil {
			t.Fatal(err)
		}
	}
	marker := event(pk, "aa", 2)
	other.Publish(Message{Event: marker, Seq: 4})
	m := recv(t, a.got, 10*time.Second)
	if m.Event.ID != marker.ID || m.Seq != 4 {
		t.Fatalf("got seq %d id %s, want the marker", m.Seq, m.Event.ID)
	}
	if g := a.garbage.Load(); g != uint64(len(garbage)) {
		t.Fatalf("garbage counter = %d, want %d", g, len(garbage))
	}
}

// With the server stopped, Publish returns at once and counts drops; when
// it is back the hook fires and messages flow again.
func TestRedisDownAndBack(t *testing.T) {
	srv := testsvc.RedisServer(t)
	a := start(t, client(t, srv.URL()), 100)
	b := start(t, client(t, srv.URL()), 100)
	var reconnects atomic.Int32
	a.OnReconnect(func() { reconnects.Add(1) })
	pk := newPK()
	ev := event(pk, "aa", 1)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "Connected false", func() bool { return !a.Connected() })
	const n = 10_000
	began := time.Now()
	for range n {
		a.Publish(Message{Event: ev, Seq: 1})
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("%d publishes with Redis down took %v", n, d)
	}
	waitFor(t, 20*time.Second, "all publishes counted as dropped", func() bool { return a.Dropped() == n })
	if reconnects.Load() != 0 {
		t.Fatal("OnReconnect fired while Redis is down")
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "OnReconnect", func() bool { return reconnects.Load() == 1 })
	waitFor(t, 20*time.Second, "b resubscribed", b.Connected)
	// The publisher may still be in its backoff, dropping, so keep sending
	// until one arrives.
	fresh := event(pk, "aa", 2)
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.Publish(Message{Event: fresh, Seq: 2})
		select {
		case m := <-b.got:
			if m.Event.ID != fresh.ID {
				t.Fatalf("got %s after restart, want the fresh event", m.Event.ID)
			}
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no message flows after Redis came back")
			}
			continue
		}
		break
	}
	waitFor(t, 10*time.Second, "a Connected", a.Connected)
}

// Close and the end of Run's context leave no goroutine of the Bus behind,
// and later Publish calls are dropped, not sent or panicking.
func TestStopLeavesNothingRunning(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	b, err := New(Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx, func(Message) {}) }()
	waitFor(t, 10*time.Second, "subscription", b.Connected)
	if err := b.Run(ctx, func(Message) {}); err == nil {
		t.Fatal("a second concurrent Run succeeded")
	}
	cancel()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run returned %v after its context ended", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Bus goroutines still running after Close and cancel")
	}
	before := b.Dropped()
	b.Publish(Message{Event: event(newPK(), "aa", 1)})
	if b.Dropped() != before+1 {
		t.Fatal("Publish after Close was not counted as dropped")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A message larger than the byte bound of the queue is dropped at once; the
// bound is in bytes because group events can be hundreds of KiB.
func TestQueueBytesBound(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	b, err := New(Config{Client: c, Channel: "test:" + t.Name(), QueueBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	big := event(newPK(), newPK(), 1)
	big.Content = strings.Repeat("A", 2<<10)
	big.ID = big.GetID()
	b.Publish(Message{Event: big, Seq: 1})
	if got := b.Dropped(); got != 1 {
		t.Fatalf("Dropped = %d after a message over the byte bound, want 1", got)
	}
	b.Publish(Message{Event: event(newPK(), newPK(), 2), Seq: 2})
	if got := b.Dropped(); got != 1 {
		t.Fatalf("Dropped = %d after a small message, want still 1", got)
	}
}
