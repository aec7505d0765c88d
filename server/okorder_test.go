package server

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// A connection that subscribes to its own KeyPackages and sends a run of
// replacements of one slot without waiting: every OK comes before its
// event's live copy, the messages arrive whole and in order, and once an OK
// true has replaced a version that version never arrives after it (issue
// 9), while the OKs and the live copies share the connection's outbox.
func TestOwnEventsAfterTheirOKAndNotAfterTheirDeletion(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c := dial(t, r.url, nil)
	author := newSigner(t)
	c.send([]any{"REQ", "own", nostr.Filter{Kinds: []int{30443}, Authors: []string{author.pk}}})
	if got := c.collect("own"); len(got) != 0 {
		t.Fatalf("stored KeyPackages before the test: %d", len(got))
	}
	const n = 200
	evs := make([]*nostr.Event, n)
	base := nostr.Now() - n
	for i := range evs {
		evs[i] = author.event(t, 30443, fmt.Sprintf("version %d", i), nostr.Tags{{"d", "slot"}}, base+nostr.Timestamp(i))
	}
	index := make(map[string]int, n)
	for i, ev := range evs {
		index[ev.ID] = i
		c.send([]any{"EVENT", ev})
	}
	okAt := -1      // the latest version answered OK true
	lastEvent := -1 // the latest version received live
	oks := 0
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for oks < n {
		msg := c.read()
		switch label(msg) {
		case "OK":
			i, known := index[str(msg[1])]
			var ok bool
			_ = json.Unmarshal(msg[2], &ok)
			if !known || !ok || i != oks {
				t.Fatalf("OK %d: version %d (known %v) ok=%v %s", oks, i, known, ok, str(msg[3]))
			}
			oks++
			okAt = i
		case "EVENT":
			if str(msg[1]) != "own" {
				t.Fatalf("event for subscription %q", str(msg[1]))
			}
			i, known := index[decodeEvent(t, msg[2]).ID]
			switch {
			case !known:
				t.Fatal("unknown event delivered")
			case i > okAt:
				t.Fatalf("version %d delivered before its OK (latest OK %d)", i, okAt)
			case i < okAt:
				t.Fatalf("version %d delivered after the OK of version %d, which replaced it", i, okAt)
			case i <= lastEvent:
				t.Fatalf("version %d delivered after version %d", i, lastEvent)
			}
			lastEvent = i
		default:
			t.Fatalf("unexpected message %s", joinRaw(msg))
		}
	}
}
