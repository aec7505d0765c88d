package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// 1,000 EVENTs written without waiting are stored and answered in send
// order: kind 445 events in one group get seq 1..1000 in that order.
func TestPipelinedEventsAnsweredInOrder(t *testing.T) {
	store := newTestStore(t)
	r := startRelay(t, Config{}, store)
	c := dial(t, r.url, nil)

	const n = 1000
	group := strings.Repeat("ab", 32)
	now := nostr.Now()
	events := make([]*nostr.Event, n)
	for i := range events {
		// A fresh key per event, as Marmot group events use.
		events[i] = newSigner(t).event(t, 445, groupContent(fmt.Sprintf("msg %d", i)), nostr.Tags{{"h", group}}, now)
	}
	writeErr := make(chan error, 1)
	go func() {
		for _, ev := range events {
			b, _ := json.Marshal([]any{"EVENT", ev})
			if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	for i := range n {
		got := c.readOK()
		if got.id != events[i].ID || !got.ok || got.msg != seqString(i+1) {
			t.Fatalf("answer %d = %+v, want OK true %q for %s", i, got, seqString(i+1), events[i].ID)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	cnt, err := store.Count(context.Background(), nostr.Filter{Kinds: []int{445}})
	if err != nil || cnt != n {
		t.Fatalf("stored count = %d, %v; want %d", cnt, err, n)
	}

	// A re-sent group event answers OK true with its seq again.
	if got := c.publish(events[41]); !got.ok || got.msg != seqString(42) {
		t.Fatalf("re-send answer = %+v, want OK true seq:42", got)
	}
}

// A subscriber that never reads is disconnected once its queue overflows,
// and no publisher waits more than 2 s for its OK meanwhile.
func TestStalledSubscriberIsDisconnected(t *testing.T) {
	limits := testLimits()
	limits.OutboundQueue = 64
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))

	// The stalled subscriber subscribes and never reads.
	stalled, err := tryDial(r.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer stalled.Close()
	b, _ := json.Marshal([]any{"REQ", "s", nostr.Filter{Kinds: []int{1}}})
	if err := stalled.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}

	pub := dial(t, r.url, nil)
	other := dial(t, r.url, nil) // a second publisher, unrelated to the subscriber
	s := newSigner(t)
	content := strings.Repeat("x", 32<<10)
	var slowest time.Duration
	for i := range 400 {
		c := pub
		if i%2 == 1 {
			c = other
		}
		ev := s.event(t, 1, fmt.Sprintf("%d %s", i, content), nil, 0)
		start := time.Now()
		if got := c.publish(ev); !got.ok {
			t.Fatalf("publish %d: %+v", i, got)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest publish: %v", slowest)
	if slowest > 2*time.Second {
		t.Fatalf("slowest publish took %v, want at most 2s", slowest)
	}
	eventually(t, "the stalled subscriber to be disconnected", func() bool {
		return counterValue(t, r.reg, "burrow_outbound_queue_overflows_total") >= 1
	})
	// Its socket ends: draining what was sent reaches the close.
	_ = stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := stalled.ReadMessage(); err != nil {
			var ne net.Error
			if ok := asNetError(err, &ne); ok && ne.Timeout() {
				t.Fatalf("stalled subscriber still connected: %v", err)
			}
			break
		}
	}
}

// REQ with concurrent publishing: stored events (newest first), EOSE, then
// live events; none missing, none twice, no live event among stored ones.
func TestReqStoredThenLive(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	s := newSigner(t)
	pub := dial(t, r.url, nil)
	base := nostr.Now() - 1000
	const stored, live = 150, 150
	all := map[string]bool{}
	for i := range stored {
		ev := s.event(t, 1, fmt.Sprint("stored ", i), nil, base+nostr.Timestamp(i))
		all[ev.ID] = true
		if got := pub.publish(ev); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
	}
	liveEvents := make([]*nostr.Event, live)
	for i := range liveEvents {
		liveEvents[i] = s.event(t, 1, fmt.Sprint("live ", i), nil, base+nostr.Timestamp(stored+i))
		all[liveEvents[i].ID] = true
	}

	const subscribers = 3
	subs := make([]*wsClient, subscribers)
	for i := range subs {
		subs[i] = dial(t, r.url, nil)
	}
	// Publish live events while the subscribers send their REQs.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, ev := range liveEvents {
			b, _ := json.Marshal([]any{"EVENT", ev})
			if err := pub.conn.WriteMessage(websocket.TextMessage, b); err != nil {
				return
			}
		}
	}()
	for i, c := range subs {
		if i > 0 {
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
		}
		c.send([]any{"REQ", "sub", nostr.Filter{Authors: []string{s.pk}, Kinds: []int{1}}})
	}
	for i, c := range subs {
		storedPart := c.collect("sub")
		if !slices.IsSortedFunc(storedPart, func(a, b *nostr.Event) int { return int(b.CreatedAt - a.CreatedAt) }) {
			t.Fatalf("subscriber %d: stored part not newest first (a live event overtook?)", i)
		}
		seen := map[string]bool{}
		for _, ev := range storedPart {
			if seen[ev.ID] {
				t.Fatalf("subscriber %d: %s twice before EOSE", i, ev.ID)
			}
			seen[ev.ID] = true
		}
		for len(seen) < len(all) {
			msg := c.read()
			if label(msg) != "EVENT" {
				t.Fatalf("subscriber %d: got %s after EOSE", i, joinRaw(msg))
			}
			ev := decodeEvent(t, msg[2])
			if seen[ev.ID] {
				t.Fatalf("subscriber %d: %s delivered twice", i, ev.ID)
			}
			if !all[ev.ID] {
				t.Fatalf("subscriber %d: unexpected event %s", i, ev.ID)
			}
			seen[ev.ID] = true
		}
	}
	wg.Wait()
	for range live {
		if got := pub.readOK(); !got.ok {
			t.Fatalf("live publish: %+v", got)
		}
	}
}

func TestReqLimitClampAndEOSE(t *testing.T) {
	limits := testLimits()
	limits.MaxLimit = 5
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	c := dial(t, r.url, nil)
	s := newSigner(t)
	base := nostr.Now() - 100
	for i := range 12 {
		c.publish(s.event(t, 1, fmt.Sprint(i), nil, base+nostr.Timestamp(i)))
	}
	tests := []struct {
		name   string
		filter string
		want   int
	}{
		{"no limit clamps to max", `{"kinds":[1]}`, 5},
		{"large limit clamps to max", `{"kinds":[1],"limit":100}`, 5},
		{"small limit kept", `{"kinds":[1],"limit":3}`, 3},
		{"limit zero sends only EOSE", `{"kinds":[1],"limit":0}`, 0},
		{"no match", `{"kinds":[2]}`, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			id := fmt.Sprint("q", i)
			c.sendRaw([]byte(`["REQ","` + id + `",` + tt.filter + `]`))
			got := c.collect(id)
			if len(got) != tt.want {
				t.Fatalf("got %d events, want %d", len(got), tt.want)
			}
			for j, ev := range got {
				if want := base + nostr.Timestamp(11-j); ev.CreatedAt != want {
					t.Fatalf("event %d created_at %d, want %d (newest first)", j, ev.CreatedAt, want)
				}
			}
			c.send([]any{"CLOSE", id})
		})
	}
}

func TestCloseStopsLiveEvents(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	sub := dial(t, r.url, nil)
	pub := dial(t, r.url, nil)
	s := newSigner(t)
	sub.send([]any{"REQ", "a", nostr.Filter{Kinds: []int{1}}})
	sub.send([]any{"REQ", "b", nostr.Filter{Kinds: []int{1}}})
	sub.collect("a")
	sub.collect("b")
	sub.send([]any{"CLOSE", "a"})
	// CLOSE is handled in order, so after this REQ's EOSE "a" is gone.
	sub.send([]any{"REQ", "sync", nostr.Filter{Kinds: []int{9}}})
	sub.collect("sync")
	pub.publish(s.event(t, 1, "after close", nil, 0))
	msg := sub.read()
	if label(msg) != "EVENT" || str(msg[1]) != "b" {
		t.Fatalf("got %s, want the event on subscription b only", joinRaw(msg))
	}
	pub.publish(s.event(t, 2, "sentinel", nil, 0))
	sub.send([]any{"REQ", "c", nostr.Filter{Kinds: []int{2}}})
	if msg := sub.read(); label(msg) != "EVENT" || str(msg[1]) != "c" {
		t.Fatalf("got %s, want subscription c's stored event (nothing more for a)", joinRaw(msg))
	}
}

func TestCount(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c := dial(t, r.url, nil)
	a, b := newSigner(t), newSigner(t)
	for i := range 4 {
		c.publish(a.event(t, 1, fmt.Sprint(i), nil, 0))
	}
	for i := range 3 {
		c.publish(b.event(t, 7, fmt.Sprint(i), nil, 0))
	}
	tests := []struct {
		filters string
		want    int64
	}{
		{`{"kinds":[1]}`, 4},
		{`{"authors":["` + b.pk + `"]}`, 3},
		{`{"kinds":[1]},{"kinds":[7]}`, 7},
		{`{"kinds":[9]}`, 0},
	}
	for i, tt := range tests {
		id := fmt.Sprint("c", i)
		c.sendRaw([]byte(`["COUNT","` + id + `",` + tt.filters + `]`))
		msg := c.read()
		if label(msg) != "COUNT" || str(msg[1]) != id {
			t.Fatalf("%s: got %s, want COUNT", tt.filters, joinRaw(msg))
		}
		var body struct {
			Count int64 `json:"count"`
		}
		if err := json.Unmarshal(msg[2], &body); err != nil || body.Count != tt.want {
			t.Fatalf("%s: count %s, want %d", tt.filters, msg[2], tt.want)
		}
	}
}

func TestEphemeralEventsAreRelayedNotStored(t *testing.T) {
	store := newTestStore(t)
	r := startRelay(t, Config{}, store)
	sub := dial(t, r.url, nil)
	pub := dial(t, r.url, nil)
	s := newSigner(t)
	sub.send([]any{"REQ", "e", nostr.Filter{Kinds: []int{20001}}})
	sub.collect("e")
	ev := s.event(t, 20001, "now or never", nil, 0)
	if got := pub.publish(ev); !got.ok {
		t.Fatalf("publish: %+v", got)
	}
	msg := sub.read()
	if label(msg) != "EVENT" || decodeEvent(t, msg[2]).ID != ev.ID {
		t.Fatalf("got %s, want the ephemeral event live", joinRaw(msg))
	}
	sub.send([]any{"REQ", "later", nostr.Filter{Kinds: []int{20001}}})
	if got := sub.collect("later"); len(got) != 0 {
		t.Fatalf("ephemeral event was stored: %d events", len(got))
	}
	if n, _ := store.Count(context.Background(), nostr.Filter{}); n != 0 {
		t.Fatalf("store holds %d events, want 0", n)
	}
}

func TestKindsSetting(t *testing.T) {
	r := startRelay(t, Config{Kinds: policy.MarmotOnly()}, newTestStore(t))
	c := dial(t, r.url, nil)
	s := newSigner(t)
	tests := []struct {
		kind   int
		ok     bool
		prefix string
	}{
		{1, false, "blocked:"},
		{445, true, ""},
		{10002, true, ""},
		{30023, false, "blocked:"},
	}
	for _, tt := range tests {
		tags, content := nostr.Tags{}, "k"
		if tt.kind == 445 {
			tags, content = nostr.Tags{{"h", strings.Repeat("cd", 32)}}, groupContent("k")
		}
		got := c.publish(s.event(t, tt.kind, content, tags, 0))
		if got.ok != tt.ok || !strings.HasPrefix(got.msg, tt.prefix) {
			t.Fatalf("kind %d: %+v, want ok=%v prefix %q", tt.kind, got, tt.ok, tt.prefix)
		}
	}
}

func asNetError(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}
