package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

// TestIngestAnswersAsAWebsocketPublish: each event refused here is
// refused by Ingest with the OK message a websocket publish of the same
// event gets, word for word, and nothing of it is stored; an accepted one
// is stored by Ingest, and the websocket re-send then hears it is held.
func TestIngestAnswersAsAWebsocketPublish(t *testing.T) {
	cfg := Config{Limits: testLimits(), Kinds: policy.MarmotOnly()}
	r := startRelay(t, cfg, newTestStore(t))
	c := dial(t, r.url, nil)
	ctx := context.Background()
	author := newSigner(t)

	tests := []struct {
		name string
		// event makes the event (and whatever state it needs, through
		// Ingest) for the case.
		event func(t *testing.T) *nostr.Event
		// ok and prefix are what both paths answer.
		ok     bool
		prefix string
	}{
		{"a bad signature", func(t *testing.T) *nostr.Event {
			ev := author.event(t, 10002, "", nostr.Tags{{"r", "wss://a.example"}}, 0)
			ev.Sig = strings.Repeat("0", 128)
			return ev
		}, false, "invalid: bad signature"},
		{"an id that does not match the content", func(t *testing.T) *nostr.Event {
			ev := author.event(t, 10002, "", nostr.Tags{{"r", "wss://b.example"}}, 0)
			ev.Content = "changed after signing"
			return ev
		}, false, "invalid: event id does not match its content"},
		{"a tombstoned id (deleted by its author)", func(t *testing.T) *nostr.Event {
			ev := author.event(t, 10050, "", nostr.Tags{{"relay", "wss://c.example"}}, nostr.Now()-60)
			if ok, msg := r.srv.Ingest(ctx, ev); !ok {
				t.Fatalf("Ingest of the event to delete: %q", msg)
			}
			del := author.event(t, 5, "", nostr.Tags{{"e", ev.ID}, {"k", "10050"}}, 0)
			if ok, msg := r.srv.Ingest(ctx, del); !ok {
				t.Fatalf("Ingest of the deletion: %q", msg)
			}
			return ev
		}, false, "blocked: deleted"},
		{"a kind this relay does not accept", func(t *testing.T) *nostr.Event {
			return author.event(t, 1, "hello", nil, 0)
		}, false, "blocked:"},
		{"a protected event (NIP-70), with nobody authenticated", func(t *testing.T) *nostr.Event {
			return author.event(t, 10002, "", nostr.Tags{{"-"}, {"r", "wss://d.example"}}, 0)
		}, false, "auth-required:"},
		{"created_at too far in the future", func(t *testing.T) *nostr.Event {
			return author.event(t, 10002, "", nostr.Tags{{"r", "wss://e.example"}}, nostr.Now()+24*3600)
		}, false, "invalid: created_at is too far in the future"},
		{"a malformed group event", func(t *testing.T) *nostr.Event {
			return author.event(t, 445, groupContent("no h"), nil, 0)
		}, false, "invalid:"},
		{"an AUTH event", func(t *testing.T) *nostr.Event {
			return author.event(t, nostr.KindClientAuthentication, "", nostr.Tags{{"challenge", "x"}}, 0)
		}, false, "invalid: AUTH events belong in an AUTH message"},
		{"content over the limit", func(t *testing.T) *nostr.Event {
			return author.event(t, 0, strings.Repeat("x", cfg.Limits.MaxContentLength+1), nil, 0)
		}, false, "invalid: content too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.event(t)
			ok, msg := r.srv.Ingest(ctx, ev)
			if ok != tt.ok || !strings.HasPrefix(msg, tt.prefix) {
				t.Fatalf("Ingest = %v %q, want %v %q…", ok, msg, tt.ok, tt.prefix)
			}
			ws := c.publish(ev)
			if ws.ok != ok || ws.msg != msg {
				t.Fatalf("Ingest answered %v %q; a websocket publish of the same event %v %q", ok, msg, ws.ok, ws.msg)
			}
			c.send([]any{"REQ", "q", nostr.Filter{IDs: []string{ev.ID}}})
			if got := c.collect("q"); len(got) != 0 {
				t.Fatalf("the refused event is served: %v", got[0])
			}
			c.send([]any{"CLOSE", "q"})
		})
	}

	t.Run("an accepted event", func(t *testing.T) {
		ev := author.event(t, 10002, "", nostr.Tags{{"r", "wss://f.example"}}, 0)
		if ok, msg := r.srv.Ingest(ctx, ev); !ok || msg != "" {
			t.Fatalf("Ingest = %v %q, want true", ok, msg)
		}
		if ws := c.publish(ev); !ws.ok || !strings.HasPrefix(ws.msg, "duplicate:") {
			t.Fatalf("websocket re-send = %v %q, want OK true duplicate:", ws.ok, ws.msg)
		}
		if ok, msg := r.srv.Ingest(ctx, ev); !ok || !strings.HasPrefix(msg, "duplicate:") {
			t.Fatalf("Ingest re-send = %v %q, want OK true duplicate:", ok, msg)
		}
	})
}

// TestIngestSkipsOnlyTheGroupFloodLimit: the per-group flood limit, which
// refuses a websocket publisher past the group's burst, does not stop
// Ingest, which sequences every event of the group; the configured rules
// (Config.Rules) still apply to Ingest; and a live subscriber gets what
// Ingest stored, in seq order, as it gets what is published.
func TestIngestSkipsOnlyTheGroupFloodLimit(t *testing.T) {
	l := testLimits()
	l.GroupRate, l.GroupBurst = 0.001, 1
	refuseMarked := func(_ context.Context, ev *nostr.Event) (bool, string) {
		return ev.Kind == 445 && strings.Contains(ev.Content, groupContent("refuse me")), "blocked: marked by the operator's rule"
	}
	r := startRelay(t, Config{Limits: l, Rules: []policy.Rule{refuseMarked}}, newTestStore(t))
	ctx := context.Background()
	h := strings.Repeat("ab", 32)
	author := newSigner(t)

	live := dial(t, r.url, nil)
	live.send([]any{"REQ", "live", nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}})
	if got := live.collect("live"); len(got) != 0 {
		t.Fatalf("stored before the test: %d", len(got))
	}

	var ids []string
	for i := range 5 {
		ev := author.event(t, 445, groupContent("event "+string(rune('a'+i))), nostr.Tags{{"h", h}}, nostr.Now()-nostr.Timestamp(10-i))
		if ok, msg := r.srv.Ingest(ctx, ev); !ok || msg != seqString(i+1) {
			t.Fatalf("Ingest of event %d = %v %q, want %s", i, ok, msg, seqString(i+1))
		}
		ids = append(ids, ev.ID)
	}
	for i, id := range ids {
		msg := live.read()
		if label(msg) != "EVENT" || decodeEvent(t, msg[2]).ID != id {
			t.Fatalf("live message %d = %s, want the event with seq %d", i, joinRaw(msg), i+1)
		}
	}

	marked := author.event(t, 445, groupContent("refuse me"), nostr.Tags{{"h", h}}, 0)
	if ok, msg := r.srv.Ingest(ctx, marked); ok || msg != "blocked: marked by the operator's rule" {
		t.Fatalf("Ingest of an event a configured rule refuses = %v %q", ok, msg)
	}

	// A websocket publisher has the group's burst of one, then is limited.
	c := dial(t, r.url, nil)
	if res := c.publish(author.event(t, 445, groupContent("ws 1"), nostr.Tags{{"h", h}}, 0)); !res.ok || res.msg != seqString(6) {
		t.Fatalf("first websocket publish = %v %q, want %s", res.ok, res.msg, seqString(6))
	}
	if res := c.publish(author.event(t, 445, groupContent("ws 2"), nostr.Tags{{"h", h}}, 0)); res.ok || !strings.HasPrefix(res.msg, "rate-limited:") {
		t.Fatalf("second websocket publish = %v %q, want rate-limited:", res.ok, res.msg)
	}
	// Ingest still goes on.
	ev := author.event(t, 445, groupContent("after"), nostr.Tags{{"h", h}}, 0)
	if ok, msg := r.srv.Ingest(ctx, ev); !ok || msg != seqString(7) {
		t.Fatalf("Ingest after the flood limit = %v %q, want %s", ok, msg, seqString(7))
	}
}

// TestIngestAfterShutdown answers error: rather than storing.
func TestIngestAfterShutdown(t *testing.T) {
	st := newTestStore(t)
	srv, err := New(Config{Limits: testLimits()}, st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ev := newSigner(t).event(t, 10002, "", nil, 0)
	if ok, msg := srv.Ingest(ctx, ev); ok || !strings.HasPrefix(msg, "error:") {
		t.Fatalf("Ingest after Shutdown = %v %q, want error:", ok, msg)
	}
}
