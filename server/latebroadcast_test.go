package server

import (
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// lateBroadcaster holds the broadcast of one event until released: the
// publisher already has its OK, and a subscription opened meanwhile
// queries storage before the event reaches the fan-out.
type lateBroadcaster struct {
	local   Broadcaster
	holdID  string
	release chan struct{}
}

func (b lateBroadcaster) Broadcast(d Delivery) {
	if d.Event.ID == b.holdID {
		<-b.release
	}
	b.local.Broadcast(d)
}

// An event stored before a subscription's stored query began is never
// delivered to it live, even when its broadcast comes after the query:
// the query saw it, and sent it or left it out by its limit (here "limit":
// 0 and "limit": 1 under a newer event). Events stored afterwards are.
func TestStoredBeforeTheQueryIsNeverLive(t *testing.T) {
	s := newSigner(t)
	held := s.event(t, 1, "stored before the query", nil, nostr.Now()-10)
	release := make(chan struct{})
	cfg := Config{BroadcastVia: func(local Broadcaster) (Broadcaster, GroupWatcher) {
		return lateBroadcaster{local: local, holdID: held.ID, release: release}, nil
	}}
	r := startRelay(t, cfg, newTestStore(t))
	first, second := dial(t, r.url, nil), dial(t, r.url, nil)
	newer := s.event(t, 1, "newer, stored before the query", nil, nostr.Now()-5)
	if ok := second.publish(newer); !ok.ok {
		t.Fatalf("publish: %+v", ok)
	}
	// Its OK comes before the broadcast, which now waits.
	if ok := first.publish(held); !ok.ok {
		t.Fatalf("publish: %+v", ok)
	}
	sub := dial(t, r.url, nil)
	sub.send([]any{"REQ", "zero", map[string]any{"authors": []string{s.pk}, "limit": 0}})
	if got := sub.collect("zero"); len(got) != 0 {
		t.Fatalf("limit 0 sent %d stored events", len(got))
	}
	sub.send([]any{"REQ", "one", map[string]any{"authors": []string{s.pk}, "limit": 1}})
	if got := sub.collect("one"); len(got) != 1 || got[0].ID != newer.ID {
		t.Fatalf("limit 1 sent %v, want the newer event", eventIDs(got))
	}
	close(release)
	live := s.event(t, 1, "after the query", nil, 0)
	if ok := second.publish(live); !ok.ok {
		t.Fatalf("publish: %+v", ok)
	}
	for range 2 { // one copy per subscription, and nothing before it
		msg := sub.read()
		if label(msg) != "EVENT" {
			t.Fatalf("got %s, want the live event", joinRaw(msg))
		}
		if got := decodeEvent(t, msg[2]); got.ID != live.ID {
			t.Fatalf("subscription %s got %.12s live (%q), want the event stored after its query", str(msg[1]), got.ID, got.Content)
		}
	}
}
