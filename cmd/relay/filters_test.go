package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// TestUnindexedFiltersAreRefused (issue 14 item 4): a REQ or COUNT whose
// filter names a tag that is not one letter has no index to run on, so it
// is refused with CLOSED "invalid:" saying why, on both backends; letter
// tags work, whatever else an event carries.
func TestUnindexedFiltersAreRefused(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			r := startLive(t, backend)
			ev := newAuthor(t).sign(t, 1, "tagged", nostr.Tags{{"client", "x"}, {"t", "x"}}, 0)
			r.mustPublish(t, ev)
			const want = `invalid: tag filter "#client" is not supported: only single-letter tag names (a-z, A-Z) are indexed`
			for _, verb := range []string{"REQ", "COUNT"} {
				msg, _ := json.Marshal([]any{verb, "s-" + verb, map[string]any{"kinds": []int{1}, "#client": []string{"x"}}})
				if err := r.client.c.WriteMessage(websocket.TextMessage, msg); err != nil {
					t.Fatal(err)
				}
				typ, _, reason, err := r.client.next("s-"+verb, time.Now().Add(testTimeout))
				if err != nil || typ != "CLOSED" || reason != want {
					t.Fatalf("%s on #client: %s %q %v; want CLOSED %q", verb, typ, reason, err, want)
				}
			}
			evs, err := r.client.query(nostr.Filter{Tags: nostr.TagMap{"t": {"x"}}}, testTimeout)
			if err != nil || len(evs) != 1 || evs[0].ID != ev.ID || !strings.Contains(evs[0].Tags.GetFirst([]string{"client"}).Value(), "x") {
				t.Fatalf("#t query: %v %v", evs, err)
			}
		})
	}
}
