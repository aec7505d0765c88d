package redisbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
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
// placeholder sig: the bus checks the id and the frame's MAC, not the
// signature, and signing thousands of events under -race takes seconds.
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
	losses  atomic.Int32
	stop    context.CancelFunc
	runDone chan error
}

// start runs a bus of the test's deployment (its stream, testKey) on c.
func start(t *testing.T, c *redis.Client, cfg Config) *running {
	t.Helper()
	cfg.Client = c
	if cfg.Stream == "" {
		cfg.Stream = "test:" + t.Name()
	}
	if cfg.Key == nil {
		cfg.Key = testKey
	}
	return run(t, cfg, nil)
}

// run starts Run on a new Bus; deliver, if set, is called before a
// message is passed on (it may block, holding the reader).
func run(t *testing.T, cfg Config, deliver func(Message)) *running {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Bus: b, got: make(chan Message, 20000), stop: cancel, runDone: make(chan error, 1)}
	b.OnLoss(func() { r.losses.Add(1) })
	go func() {
		r.runDone <- b.Run(ctx, func(m Message) {
			if deliver != nil {
				deliver(m)
			}
			r.got <- m
		})
	}()
	t.Cleanup(func() {
		cancel()
		_ = b.Close()
		<-r.runDone
	})
	waitFor(t, 10*time.Second, "reading the stream", b.Connected)
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

func TestNewRejectsBadConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, cfg := range []Config{{Key: testKey}, {Client: c}, {Client: c, Key: []byte("short")}} {
		if b, err := New(cfg); err == nil {
			b.Close()
			t.Fatalf("New(%+v) succeeded", cfg)
		}
	}
}

// Two instances on one Redis see each other's messages, all of them, in
// publish order, and never their own.
func TestTwoBusesDeliverInOrder(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	a, b := start(t, c, Config{}), start(t, c, Config{})
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
	if d := a.Dropped() + b.Dropped() + a.Missed() + b.Missed() + a.Rejected() + b.Rejected(); d != 0 {
		t.Fatalf("dropped, missed or rejected %d with Redis up", d)
	}
}

// A bus alone on the stream receives nothing of its own: a marker from a
// second bus, written after all of the first's messages, is the first
// thing delivered.
func TestSkipsOwn(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	a, other := start(t, c, Config{}), start(t, c, Config{})
	pk := newPK()
	for i := range 100 {
		a.Publish(Message{Event: event(pk, "aa", i)})
	}
	for range 100 {
		recv(t, other.got, 10*time.Second)
	}
	marker := event(pk, "aa", 1000)
	other.Publish(Message{Event: marker})
	if m := recv(t, a.got, 10*time.Second); m.Event.ID != marker.ID {
		t.Fatalf("first delivery is %s, want the other bus's marker", m.Event.ID)
	}
}

// TestUnauthenticatedFramesAreNeverDelivered (issue 14 item 9): whatever
// else lands on the stream (garbage, frames of the earlier unauthenticated
// versions, a frame made by hand around an event with an all-zero
// signature, another deployment's frames under its own key) is counted
// and not delivered; the deployment's own frames still are.
func TestUnauthenticatedFramesAreNeverDelivered(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	a, other := start(t, c, Config{}), start(t, c, Config{})
	pk := newPK()
	forged := event(pk, "aa", 7)
	forged.Sig = strings.Repeat("0", 128)
	body, _ := forged.MarshalJSON()
	v2 := append(append([]byte{frameVersionV2, 1, 2, 3, 4, 5, 6, 7, 8}, 1, 0), body...)
	otherDeployment, _ := encodeEvent([]byte("another deployment's key 0123456"), [idLen]byte{5}, 1, Message{Event: forged, Seq: 1})
	good, _ := encodeEvent(testKey, [idLen]byte{9}, 1, Message{Event: forged, Seq: 1})
	garbage := [][]byte{
		{},
		[]byte("hello"),
		v2,
		otherDeployment,
		good[:len(good)-1],                   // MAC cut short
		append(append([]byte{}, good...), 0), // a byte added
	}
	for _, g := range garbage {
		if err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: a.stream, Values: []any{"f", g}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	marker := event(pk, "aa", 2)
	other.Publish(Message{Event: marker, Seq: 4})
	m := recv(t, a.got, 10*time.Second)
	if m.Event.ID != marker.ID || m.Seq != 4 {
		t.Fatalf("got seq %d id %s, want the marker", m.Seq, m.Event.ID)
	}
	if r := a.Rejected(); r != uint64(len(garbage)) {
		t.Fatalf("Rejected = %d, want %d", r, len(garbage))
	}
}

// TestDeploymentsDoNotMix: two deployments on one Redis server, each with
// its own stream and key, never see each other's events, even when one
// is misconfigured onto the other's stream.
func TestDeploymentsDoNotMix(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	keyB := []byte("deployment B's key, 32 bytes....")
	a1, a2 := start(t, c, Config{Stream: "a:bus"}), start(t, c, Config{Stream: "a:bus"})
	b1 := start(t, c, Config{Stream: "b:bus", Key: keyB})
	intruder := start(t, c, Config{Stream: "a:bus", Key: keyB}) // B's key on A's stream
	pk := newPK()
	b1.Publish(Message{Event: event(pk, "bb", 1)})
	intruder.Publish(Message{Event: event(pk, "bb", 2)})
	mine := event(pk, "aa", 3)
	a2.Publish(Message{Event: mine})
	if m := recv(t, a1.got, 10*time.Second); m.Event.ID != mine.ID {
		t.Fatalf("deployment A delivered %s, want only its own event", m.Event.ID)
	}
	waitFor(t, 10*time.Second, "the intruder's frame rejected", func() bool { return a1.Rejected() == 1 })
	select {
	case m := <-b1.got:
		t.Fatalf("deployment B delivered %s from A's stream", m.Event.ID)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestRedisDownAndBack: while Redis is down, Publish returns at once and
// frames wait in the queue; what fits is written when Redis is back and
// read by the other instance, in order, and what did not fit is counted
// on both sides (Dropped by the sender, Missed by the receiver, which
// calls its OnLoss hooks).
func TestRedisDownAndBack(t *testing.T) {
	srv := testsvc.RedisServer(t)
	a := start(t, client(t, srv.URL()), Config{QueueSize: 100})
	b := start(t, client(t, srv.URL()), Config{})
	pk := newPK()
	a.Publish(Message{Event: event(pk, "aa", 0), Seq: 1})
	recv(t, b.got, 10*time.Second) // b knows a's numbers from here on

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "Connected false", func() bool { return !a.Connected() })
	const n = 1000
	began := time.Now()
	for i := 1; i <= n; i++ {
		a.Publish(Message{Event: event(pk, "aa", i), Seq: int64(i + 1)})
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("%d publishes with Redis down took %v", n, d)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "b reading again", b.Connected)
	// The queue held the first frames (one more may wait in the publisher's
	// hands); the rest were dropped.
	var got []int64
	for len(got) < n-int(a.Dropped()) {
		got = append(got, recv(t, b.got, 20*time.Second).Seq)
	}
	for i, s := range got {
		if s != int64(i+2) {
			t.Fatalf("after the outage b got seqs %v..., want 2, 3, ... in order", got[:min(len(got), i+1)])
		}
	}
	if a.Dropped() == 0 {
		t.Fatal("nothing was dropped with a 100-frame queue and 1,000 frames")
	}
	// The next frame, or the heartbeat, tells b how many it missed.
	last := event(pk, "aa", n+1)
	a.Publish(Message{Event: last, Seq: int64(n + 2)})
	if m := recv(t, b.got, 20*time.Second); m.Event.ID != last.ID {
		t.Fatalf("got %s, want the last event", m.Event.ID)
	}
	if b.Missed() != a.Dropped() || b.losses.Load() == 0 {
		t.Fatalf("b missed %d (losses reported %d), a dropped %d", b.Missed(), b.losses.Load(), a.Dropped())
	}
}

// TestAReceiverBehindReadsOnOrCountsWhatWasTrimmed: a receiver that stops
// reading for a while reads on from where it stopped; frames the stream
// trimmed meanwhile (older than the retention) are counted as missed,
// exactly, and reported, so delivered plus missed is all that was sent.
// A trailing loss is revealed by the sender's heartbeat.
func TestAReceiverBehindReadsOnOrCountsWhatWasTrimmed(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	stream := "test:" + t.Name()
	a := start(t, c, Config{Stream: stream, Retention: 50 * time.Millisecond})
	hold := make(chan struct{})
	var once sync.Once
	b := run(t, Config{Client: c, Stream: stream, Key: testKey}, func(Message) { once.Do(func() { <-hold }) })
	pk := newPK()
	const n = 2000
	a.Publish(Message{Event: event(pk, "aa", 0), Seq: 1}) // b holds here
	waitFor(t, 10*time.Second, "the first frame written", func() bool { return c.XLen(context.Background(), stream).Val() >= 1 })
	for i := 1; i < n; i++ {
		a.Publish(Message{Event: event(pk, "aa", i), Seq: int64(i + 1)})
		if i%500 == 0 {
			time.Sleep(200 * time.Millisecond) // older frames pass the retention
		}
	}
	waitFor(t, 10*time.Second, "the stream trimmed", func() bool { return c.XLen(context.Background(), stream).Val() < n })
	close(hold)
	delivered := 1
	deadline := time.Now().Add(20 * time.Second)
	for uint64(delivered)+b.Missed() < n {
		select {
		case <-b.got:
			delivered++
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("delivered %d and missed %d of %d", delivered, b.Missed(), n)
			}
		}
	}
	if b.Missed() == 0 || b.losses.Load() == 0 {
		t.Fatalf("nothing counted as missed (%d delivered), losses %d", delivered, b.losses.Load())
	}
	if uint64(delivered)+b.Missed() != n {
		t.Fatalf("delivered %d + missed %d != %d", delivered, b.Missed(), n)
	}
}

// Close and the end of Run's context leave no goroutine of the Bus behind,
// and later Publish calls are dropped, not sent or panicking.
func TestStopLeavesNothingRunning(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	b, err := New(Config{Client: c, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx, func(Message) {}) }()
	waitFor(t, 10*time.Second, "reading the stream", b.Connected)
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
	b, err := New(Config{Client: c, Key: testKey, Stream: "test:" + t.Name(), QueueBytes: 1 << 10})
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

// TestDeletionNoticesCross: deletion notices reach the other instances in
// order with the events around them, long lists split into several.
func TestDeletionNoticesCross(t *testing.T) {
	c := client(t, testsvc.Redis(t))
	a, b := start(t, c, Config{}), start(t, c, Config{})
	pk := newPK()
	before, after := event(pk, "aa", 1), event(pk, "aa", 2)
	ids := make([]string, MaxDeletedPerMessage+5)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i+1)
	}
	a.Publish(Message{Event: before})
	a.Publish(Message{Deleted: ids})
	a.Publish(Message{Event: after})
	a.Publish(Message{}) // neither an event nor deletions: dropped, never sent
	if m := recv(t, b.got, 10*time.Second); m.Event == nil || m.Event.ID != before.ID {
		t.Fatalf("first message %+v, want the event before the notice", m)
	}
	var got []string
	for len(got) < len(ids) {
		m := recv(t, b.got, 10*time.Second)
		if m.Event != nil || len(m.Deleted) == 0 || len(m.Deleted) > MaxDeletedPerMessage {
			t.Fatalf("got %+v, want a deletion notice", m)
		}
		got = append(got, m.Deleted...)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("the notices carried %d ids, not the %d published in order", len(got), len(ids))
	}
	if m := recv(t, b.got, 10*time.Second); m.Event == nil || m.Event.ID != after.ID {
		t.Fatalf("then %+v, want the event after the notice", m)
	}
}
