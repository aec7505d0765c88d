package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// seqEvent is one EVENT of a since_seq subscription.
type seqEvent struct {
	ev       *nostr.Event
	seq      int64
	released bool
}

// readSeqEvent reads an EVENT that must carry the {"seq": n} element.
func (c *wsClient) readSeqEvent(subID string) seqEvent {
	c.t.Helper()
	msg := c.read()
	if label(msg) != "EVENT" || str(msg[1]) != subID || len(msg) != 4 {
		c.t.Fatalf("got %s, want a 4-element EVENT for %s", joinRaw(msg), subID)
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(msg[3], &meta); err != nil {
		c.t.Fatalf("fourth element %s is not an object", msg[3])
	}
	var out seqEvent
	out.ev = decodeEvent(c.t, msg[2])
	if err := json.Unmarshal(meta["seq"], &out.seq); err != nil {
		c.t.Fatalf("fourth element %s has no integer seq", msg[3])
	}
	if r, ok := meta["released"]; ok {
		if string(r) != "true" {
			c.t.Fatalf(`"released" is %s; it appears only as true`, r)
		}
		out.released = true
	}
	if len(meta) != 1 && !(len(meta) == 2 && out.released) {
		c.t.Fatalf("fourth element %s has unknown fields", msg[3])
	}
	return out
}

func (c *wsClient) expect(labelWant, subID string) {
	c.t.Helper()
	msg := c.read()
	if label(msg) != labelWant || str(msg[1]) != subID {
		c.t.Fatalf("got %s, want %s for %s", joinRaw(msg), labelWant, subID)
	}
}

// publishGroup publishes n kind 445 events to h and returns them by seq
// (index 0 is seq 1), checking each OK is exactly seq:<n>.
func publishGroup(t *testing.T, c *wsClient, h string, first, n int) []*nostr.Event {
	t.Helper()
	out := make([]*nostr.Event, n)
	for i := range n {
		ev := newSigner(t).event(t, 445, groupContent(strconv.Itoa(first+i)), nostr.Tags{{"h", h}}, 0)
		if got := c.publish(ev); !got.ok || got.msg != "seq:"+strconv.Itoa(first+i) {
			t.Fatalf("publish %d: %+v, want OK seq:%d", first+i, got, first+i)
		}
		out[i] = ev
	}
	return out
}

func TestOrderedReadPagesThenGoesLive(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	pub := dial(t, r.url, nil)
	h := strings.Repeat("5a", 32)
	evs := publishGroup(t, pub, h, 1, 5)
	publishGroup(t, pub, strings.Repeat("6b", 32), 1, 2) // another group stays out

	c := dial(t, r.url, nil)
	// A page cut short: two events, EOSE, then CLOSED with the cursor.
	c.send([]any{"REQ", "p1", map[string]any{"#h": []string{h}, "since_seq": 0, "limit": 2}})
	for i := range 2 {
		if got := c.readSeqEvent("p1"); got.seq != int64(i+1) || got.ev.ID != evs[i].ID {
			t.Fatalf("page 1 item %d: seq %d id %s, want seq %d id %s", i, got.seq, got.ev.ID, i+1, evs[i].ID)
		}
	}
	c.expect("EOSE", "p1")
	if msg := c.readClosed("p1"); msg != "more: after seq 2" {
		t.Fatalf("CLOSED %q, want %q", msg, "more: after seq 2")
	}

	// The rest of the log, then live events in order with their seq.
	c.send([]any{"REQ", "p2", map[string]any{"#h": []string{h}, "since_seq": 2, "kinds": []int{445}}})
	for i := 2; i < 5; i++ {
		if got := c.readSeqEvent("p2"); got.seq != int64(i+1) || got.ev.ID != evs[i].ID {
			t.Fatalf("page 2: seq %d, want %d", got.seq, i+1)
		}
	}
	c.expect("EOSE", "p2")
	live := publishGroup(t, pub, h, 6, 3)
	for i, ev := range live {
		if got := c.readSeqEvent("p2"); got.seq != int64(6+i) || got.ev.ID != ev.ID || got.released {
			t.Fatalf("live: %+v, want seq %d", got, 6+i)
		}
	}

	// A limit of exactly what is left goes live (nothing more is stored).
	c.send([]any{"REQ", "p3", map[string]any{"#h": []string{h}, "since_seq": 7, "limit": 1}})
	if got := c.readSeqEvent("p3"); got.seq != 8 {
		t.Fatalf("p3 seq %d, want 8", got.seq)
	}
	c.expect("EOSE", "p3")
	publishGroup(t, pub, h, 9, 1)
	// Both subscriptions are live; the order between them is free.
	got := map[string]int64{}
	for range 2 {
		msg := c.read()
		if label(msg) != "EVENT" || len(msg) != 4 {
			t.Fatalf("got %s, want a live EVENT", joinRaw(msg))
		}
		var meta struct{ Seq int64 }
		_ = json.Unmarshal(msg[3], &meta)
		got[str(msg[1])] = meta.Seq
	}
	if got["p2"] != 9 || got["p3"] != 9 {
		t.Fatalf("live seq per subscription %v, want 9 on p2 and p3", got)
	}
}

func TestOrderedReadZeroLimitAndEmptyGroup(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c := dial(t, r.url, nil)
	h := strings.Repeat("7c", 32)
	// An empty group goes live at once.
	c.send([]any{"REQ", "empty", map[string]any{"#h": []string{h}, "since_seq": 0}})
	c.expect("EOSE", "empty")
	publishGroup(t, dial(t, r.url, nil), h, 1, 1)
	if got := c.readSeqEvent("empty"); got.seq != 1 {
		t.Fatalf("seq %d, want 1", got.seq)
	}
	// limit 0 with stored events left: no events, EOSE, CLOSED at the cursor.
	c.send([]any{"REQ", "zero", map[string]any{"#h": []string{h}, "since_seq": 0, "limit": 0}})
	c.expect("EOSE", "zero")
	if msg := c.readClosed("zero"); msg != "more: after seq 0" {
		t.Fatalf("CLOSED %q", msg)
	}
}

func TestOrderedReadRefusesOtherShapes(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c := dial(t, r.url, nil)
	h := strings.Repeat("8d", 32)
	tests := []struct {
		name string
		req  []any
	}{
		{"two filters", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": 0}, map[string]any{"kinds": []int{1}}}},
		{"second filter carries it", []any{"REQ", "x", map[string]any{"kinds": []int{1}}, map[string]any{"#h": []string{h}, "since_seq": 0}}},
		{"two h values", []any{"REQ", "x", map[string]any{"#h": []string{h, strings.Repeat("9e", 32)}, "since_seq": 0}}},
		{"no h", []any{"REQ", "x", map[string]any{"since_seq": 0}}},
		{"malformed h", []any{"REQ", "x", map[string]any{"#h": []string{"group"}, "since_seq": 0}}},
		{"authors", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": 0, "authors": []string{h}}}},
		{"since", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": 0, "since": 1}}},
		{"other kind", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": 0, "kinds": []int{1}}}},
		{"two kinds", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": 0, "kinds": []int{445, 1}}}},
		{"negative cursor", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": -1}}},
		{"fractional cursor", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": 1.5}}},
		{"string cursor", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": "3"}}},
		{"negative limit", []any{"REQ", "x", map[string]any{"#h": []string{h}, "since_seq": 0, "limit": -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.send(tt.req)
			if msg := c.readClosed("x"); !strings.HasPrefix(msg, "invalid:") {
				t.Fatalf("CLOSED %q, want invalid:", msg)
			}
		})
	}
}

func TestPlainSubscriptionKeepsNIP01Shape(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	pub := dial(t, r.url, nil)
	h := strings.Repeat("1f", 32)
	evs := publishGroup(t, pub, h, 1, 3)
	c := dial(t, r.url, nil)
	c.send([]any{"REQ", "plain", nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}})
	// Stored: NIP-01 order (newest first, ties by id), three elements each.
	var got []*nostr.Event
	for range 3 {
		msg := c.read()
		if label(msg) != "EVENT" || len(msg) != 3 {
			t.Fatalf("got %s, want a 3-element EVENT", joinRaw(msg))
		}
		got = append(got, decodeEvent(t, msg[2]))
	}
	if !slices.Equal(eventIDs(got), eventIDs(evs)) {
		t.Fatalf("stored events differ")
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].CreatedAt < got[i].CreatedAt || got[i-1].CreatedAt == got[i].CreatedAt && got[i-1].ID > got[i].ID {
			t.Fatalf("stored events not in NIP-01 order")
		}
	}
	c.expect("EOSE", "plain")
	live := publishGroup(t, pub, h, 4, 1)
	if msg := c.read(); label(msg) != "EVENT" || len(msg) != 3 || decodeEvent(t, msg[2]).ID != live[0].ID {
		t.Fatalf("got %s, want a 3-element live EVENT", joinRaw(msg))
	}
}

func TestGroupRetentionSweep(t *testing.T) {
	store := newTestStore(t)
	h := strings.Repeat("2e", 32)
	old := newSigner(t).event(t, 445, groupContent("old"), nostr.Tags{{"h", h}}, nostr.Timestamp(time.Now().Add(-100*24*time.Hour).Unix()))
	if _, err := store.Save(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	var logged syncBuffer
	r := startRelay(t, Config{GroupRetention: 90 * 24 * time.Hour, SweepInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logged, nil))}, store)
	eventually(t, "the old group event swept", func() bool {
		n, err := store.Count(context.Background(), nostr.Filter{IDs: []string{old.ID}})
		return err == nil && n == 0
	})
	// The operator was told before it happened: how many, and from when.
	if log := logged.String(); !strings.Contains(log, "group retention: deleting kind 445 events created before the cutoff") ||
		!strings.Contains(log, "count=1 ") || !strings.Contains(log, "retention=2160h0m0s") {
		t.Errorf("the start-up sweep was not announced with its count and cutoff:\n%s", log)
	}
	c := dial(t, r.url, nil)
	// Re-sending it is refused; a fresh event takes seq 2, never 1 again.
	if got := c.publish(old); got.ok || !strings.HasPrefix(got.msg, "invalid: group event is older") {
		t.Fatalf("re-sent old event: %+v", got)
	}
	publishGroup(t, c, h, 2, 1)
}

// syncBuffer is a bytes.Buffer a logger may write while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
