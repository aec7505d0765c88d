package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// Bad input gets the right answer and prefix, the connection stays usable
// and nothing is stored.
func TestBadInput(t *testing.T) {
	limits := testLimits()
	limits.MaxMessageLength = 8 << 10
	limits.MaxContentLength = 4 << 10
	limits.MaxGroupContentLength = 2 << 10 // a claim of one must fit in a message
	limits.MaxEventTags = 5
	limits.MaxSubIDLength = 10
	limits.MaxFilters = 2
	store := newTestStore(t)
	r := startRelay(t, Config{Limits: limits}, store)
	c := dial(t, r.url, nil)
	s := newSigner(t)

	eventJSON := func(ev *nostr.Event) string { b, _ := json.Marshal(ev); return string(b) }
	wrongID := s.event(t, 1, "x", nil, 0)
	wrongID.Content = "tampered"
	badSig := s.event(t, 1, "x", nil, 0)
	badSig.Sig = strings.Repeat("ab", 64)
	otherSig := s.event(t, 1, "y", nil, 0)
	stolenSig := s.event(t, 1, "x", nil, 0)
	stolenSig.Sig = otherSig.Sig
	tooManyTags := s.event(t, 1, "x", nostr.Tags{{"t", "1"}, {"t", "2"}, {"t", "3"}, {"t", "4"}, {"t", "5"}, {"t", "6"}}, 0)
	longContent := s.event(t, 1, strings.Repeat("y", 5<<10), nil, 0)
	future := s.event(t, 1, "x", nil, nostr.Now()+3600)
	expired := s.event(t, 1, "x", nostr.Tags{{"expiration", fmt.Sprint(nostr.Now() - 10)}}, 0)
	oversize := s.event(t, 1, strings.Repeat("z", 10<<10), nil, 0)
	// The id comes first in the frame, as clients write it, so the OK can
	// name it even though the frame is cut.
	oversizeFrame := fmt.Sprintf(`["EVENT",{"id":"%s","pubkey":"%s","created_at":%d,"kind":1,"tags":[],"content":"%s","sig":"%s"}]`,
		oversize.ID, oversize.PubKey, oversize.CreatedAt, oversize.Content, oversize.Sig)

	tests := []struct {
		name   string
		frame  string
		binary bool
		label  string // expected answer type
		prefix string
	}{
		{"not JSON", `hello`, false, "NOTICE", "invalid:"},
		{"object, not array", `{"a":1}`, false, "NOTICE", "invalid:"},
		{"empty array", `[]`, false, "NOTICE", "invalid:"},
		{"unknown type", `["HELLO","x"]`, false, "NOTICE", "invalid:"},
		{"binary frame", `["REQ","b",{}]`, true, "NOTICE", "invalid:"},
		{"EVENT without event", `["EVENT"]`, false, "NOTICE", "invalid:"},
		{"EVENT not an object", `["EVENT","x"]`, false, "NOTICE", "invalid:"},
		{"EVENT bad id format", `["EVENT",{"id":"xyz","kind":1}]`, false, "NOTICE", "invalid:"},
		{"wrong id", `["EVENT",` + eventJSON(wrongID) + `]`, false, "OK", "invalid:"},
		{"bad signature", `["EVENT",` + eventJSON(badSig) + `]`, false, "OK", "invalid:"},
		{"signature of another event", `["EVENT",` + eventJSON(stolenSig) + `]`, false, "OK", "invalid:"},
		{"too many tags", `["EVENT",` + eventJSON(tooManyTags) + `]`, false, "OK", "invalid:"},
		{"content too long", `["EVENT",` + eventJSON(longContent) + `]`, false, "OK", "invalid:"},
		{"created_at in the future", `["EVENT",` + eventJSON(future) + `]`, false, "OK", "invalid:"},
		{"already expired", `["EVENT",` + eventJSON(expired) + `]`, false, "OK", "invalid:"},
		{"oversize EVENT", oversizeFrame, false, "OK", "invalid:"},
		{"oversize REQ", `["REQ","big",{"ids":["` + strings.Repeat("a", 9<<10) + `"]}]`, false, "CLOSED", "invalid:"},
		{"REQ without filter", `["REQ","r1"]`, false, "CLOSED", "invalid:"},
		{"REQ filter not an object", `["REQ","r2",[1]]`, false, "CLOSED", "invalid:"},
		{"REQ garbage kinds", `["REQ","r3",{"kinds":"x"}]`, false, "CLOSED", "invalid:"},
		{"REQ bad ids", `["REQ","r4",{"ids":["zz"]}]`, false, "CLOSED", "invalid:"},
		{"REQ negative limit", `["REQ","r5",{"limit":-1}]`, false, "CLOSED", "invalid:"},
		{"REQ too many filters", `["REQ","r6",{},{},{}]`, false, "CLOSED", "invalid:"},
		{"REQ numeric id", `["REQ",5,{}]`, false, "NOTICE", "invalid:"},
		{"REQ id too long", `["REQ","` + strings.Repeat("s", 11) + `",{}]`, false, "NOTICE", "invalid:"},
		{"COUNT garbage filter", `["COUNT","c1",{"authors":[1]}]`, false, "CLOSED", "invalid:"},
		{"CLOSE without id", `["CLOSE"]`, false, "NOTICE", "invalid:"},
		{"AUTH without event", `["AUTH"]`, false, "NOTICE", "invalid:"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			typ := websocket.TextMessage
			if tt.binary {
				typ = websocket.BinaryMessage
			}
			if err := c.conn.WriteMessage(typ, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			msg := c.read()
			if label(msg) != tt.label {
				t.Fatalf("got %s, want %s", joinRaw(msg), tt.label)
			}
			reason := str(msg[len(msg)-1])
			if tt.label == "OK" {
				var ok bool
				_ = json.Unmarshal(msg[2], &ok)
				if ok {
					t.Fatalf("OK true for bad input: %s", joinRaw(msg))
				}
			}
			if !strings.HasPrefix(reason, tt.prefix) {
				t.Fatalf("reason %q, want prefix %q", reason, tt.prefix)
			}
			// Still usable: a REQ gets its EOSE.
			id := fmt.Sprint("ok", i)
			c.send([]any{"REQ", id, nostr.Filter{Kinds: []int{7}}})
			c.collect(id)
			c.send([]any{"CLOSE", id})
		})
	}
	if n, err := store.Count(context.Background(), nostr.Filter{}); err != nil || n != 0 {
		t.Fatalf("store holds %d events (%v), want 0", n, err)
	}
}

func TestSubscriptionCap(t *testing.T) {
	limits := testLimits()
	limits.MaxSubscriptions = 2
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	c := dial(t, r.url, nil)
	c.send([]any{"REQ", "a", nostr.Filter{}})
	c.collect("a")
	c.send([]any{"REQ", "b", nostr.Filter{}})
	c.collect("b")
	// Re-using an open id replaces it and needs no new slot.
	c.send([]any{"REQ", "a", nostr.Filter{Kinds: []int{1}}})
	c.collect("a")
	c.send([]any{"REQ", "c", nostr.Filter{}})
	if msg := c.read(); label(msg) != "CLOSED" || str(msg[1]) != "c" || !strings.HasPrefix(str(msg[2]), "rate-limited:") {
		t.Fatalf("got %s, want CLOSED c rate-limited:", joinRaw(msg))
	}
	c.send([]any{"CLOSE", "b"})
	c.send([]any{"REQ", "c", nostr.Filter{}})
	c.collect("c")
}
