package marmot

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// fakeRelay is a scripted relay: NIP-11 from info, and every websocket
// frame handed to on, which answers through send.
type fakeRelay struct {
	info map[string]any
	on   func(send func(...any), frame []json.RawMessage)
}

func (f *fakeRelay) start(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Header().Set("Content-Type", "application/nostr+json")
			_ = json.NewEncoder(w).Encode(f.info)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		send := func(v ...any) {
			b, _ := json.Marshal(v)
			_ = ws.WriteMessage(websocket.TextMessage, b)
		}
		send("AUTH", "challenge-1")
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var frame []json.RawMessage
			if json.Unmarshal(msg, &frame) == nil && len(frame) > 0 {
				f.on(send, frame)
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func label(f []json.RawMessage) string {
	var s string
	_ = json.Unmarshal(f[0], &s)
	return s
}

func TestClientPublishAndAuth(t *testing.T) {
	acct := mustAccount(t)
	var authed atomic.Bool
	relay := &fakeRelay{info: map[string]any{"supported_nips": []int{1, 42}}, on: func(send func(...any), f []json.RawMessage) {
		switch label(f) {
		case "AUTH":
			var ev nostr.Event
			_ = json.Unmarshal(f[1], &ev)
			ok, _ := ev.CheckSignature()
			authed.Store(ok && ev.Kind == 22242 && ev.Tags.GetFirst([]string{"challenge", ""}).Value() == "challenge-1")
			send("OK", ev.ID, authed.Load(), "")
		case "EVENT":
			var ev nostr.Event
			_ = json.Unmarshal(f[1], &ev)
			switch {
			case ev.Content == "dup":
				send("OK", ev.ID, true, "duplicate: have it")
			case ev.Content == "no":
				send("OK", ev.ID, false, "blocked: no")
			case ev.Content == "garbage":
				send("OK") // malformed: the client keeps waiting, then times out
			case ev.Kind == 1059 && !authed.Load():
				send("OK", ev.ID, false, "auth-required: gift wraps need AUTH")
			default:
				send("OK", ev.ID, true, "seq:42")
			}
		case "REQ":
			var sub string
			_ = json.Unmarshal(f[1], &sub)
			if !authed.Load() {
				send("CLOSED", sub, "auth-required: say who you are")
				return
			}
			ev := nostr.Event{Kind: 1059, Content: "x", CreatedAt: 1, Tags: nostr.Tags{{"p", acct.PublicKey().Hex()}}}
			_ = ev.Sign(hex.EncodeToString(make([]byte, 31)) + "01")
			send("EVENT", sub, ev)
			send("EOSE", sub)
		}
	}}
	ctx := context.Background()
	c, err := Dial(ctx, relay.start(t), ClientOptions{Signer: acct, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ev := func(kind int, content string) *nostr.Event {
		e := &nostr.Event{Kind: kind, Content: content, CreatedAt: nostr.Now()}
		_ = acct.SignEvent(e)
		return e
	}
	if ok, err := c.Publish(ctx, ev(1, "hello")); err != nil || ok.Seq != 42 {
		t.Fatalf("publish: %+v %v", ok, err)
	}
	if ok, err := c.Publish(ctx, ev(1, "dup")); err != nil || !ok.Accepted {
		t.Fatalf("duplicate: counts as accepted: %+v %v", ok, err)
	}
	if _, err := c.Publish(ctx, ev(1, "no")); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "blocked: no") {
		t.Fatalf("refused: %v", err)
	}
	// auth-required makes the client authenticate and send again.
	if _, err := c.Publish(ctx, ev(1059, "wrap")); err != nil || !authed.Load() {
		t.Fatalf("publish after AUTH: %v (authed %v)", err, authed.Load())
	}
	authed.Store(false)
	gws, err := c.GiftWraps(ctx, acct.PublicKey())
	if err != nil || len(gws) != 1 || !authed.Load() {
		t.Fatalf("gift wraps after AUTH: %d %v", len(gws), err)
	}
	start := time.Now()
	if _, err := c.Publish(ctx, ev(1, "garbage")); !errors.Is(err, ErrTimeout) || time.Since(start) > 5*time.Second {
		t.Fatalf("malformed OK: %v after %v", err, time.Since(start))
	}
}

func TestClientOrderedReadPages(t *testing.T) {
	h := [32]byte{1}
	gh := hex.EncodeToString(h[:])
	events := make([]nostr.Event, 5)
	for i := range events {
		events[i] = nostr.Event{Kind: 445, Content: strings.Repeat("A", 40), CreatedAt: nostr.Timestamp(100 + i), Tags: nostr.Tags{{"h", gh}}}
		_ = events[i].Sign(hex.EncodeToString(make([]byte, 31)) + "02")
	}
	relay := &fakeRelay{info: map[string]any{"supported_extensions": []string{ExtSinceSeq, ExtCommitSlots}}, on: func(send func(...any), f []json.RawMessage) {
		if label(f) != "REQ" {
			return
		}
		var sub string
		_ = json.Unmarshal(f[1], &sub)
		var filter struct {
			SinceSeq uint64   `json:"since_seq"`
			H        []string `json:"#h"`
		}
		_ = json.Unmarshal(f[2], &filter)
		// Pages of two, as a relay whose limit cuts them.
		from := int(filter.SinceSeq)
		to := min(from+2, len(events))
		for i := from; i < to; i++ {
			send("EVENT", sub, events[i], map[string]any{"seq": i + 1})
		}
		if to < len(events) {
			send("EOSE", sub, []string{"more"})
			send("CLOSED", sub, "more: after seq "+string(rune('0'+to)))
		} else {
			send("EOSE", sub, []string{"finish"})
		}
	}}
	ctx := context.Background()
	c, err := Dial(ctx, relay.start(t), ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Info().Supports(ExtSinceSeq) || !c.Info().Supports(ExtCommitSlots) {
		t.Fatalf("info %+v", c.Info())
	}
	got, cursor, err := c.GroupEvents(ctx, h, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || cursor != 5 {
		t.Fatalf("read %d events, cursor %d", len(got), cursor)
	}
	for i, d := range got {
		if d.Seq != uint64(i+1) || d.Event.ID != events[i].ID {
			t.Fatalf("event %d: seq %d", i, d.Seq)
		}
	}
}

// A plain REQ that the relay's limit cut gets EOSE ["more"] (NIP-67) and
// stays live, with no CLOSED: Fetch returns what came, at once, rather
// than waiting for a CLOSED that only since_seq reads get.
func TestClientFetchCutPlainReq(t *testing.T) {
	ev := nostr.Event{Kind: 1059, Content: "wrap", CreatedAt: 100, Tags: nostr.Tags{}}
	_ = ev.Sign(hex.EncodeToString(make([]byte, 31)) + "02")
	relay := &fakeRelay{info: map[string]any{}, on: func(send func(...any), f []json.RawMessage) {
		if label(f) != "REQ" {
			return
		}
		var sub string
		_ = json.Unmarshal(f[1], &sub)
		send("EVENT", sub, ev)
		send("EOSE", sub, []string{"more"})
	}}
	ctx := context.Background()
	c, err := Dial(ctx, relay.start(t), ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Fetch(ctx, nostr.Filter{Kinds: []int{1059}})
	if err != nil || len(got) != 1 || got[0].Event.ID != ev.ID {
		t.Fatalf("Fetch = %d events, %v; want the one event and no error (not a timeout)", len(got), err)
	}
}

// TestSlotKey checks the commit-slot key derivation against the vectors of
// docs/commit-slots.md section 2.
func TestSlotKey(t *testing.T) {
	for _, tc := range []struct{ x, sk string }{
		{"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20", "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"},
		{"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "000000000000000000000000000000014551231950b75fc4402da1732fc9bebe"},
		{"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364142", "0000000000000000000000000000000000000000000000000000000000000001"},
	} {
		sk, err := slotKey(unhex(t, tc.x))
		if err != nil || hex.EncodeToString(sk) != tc.sk {
			t.Errorf("x %s: sk %x %v", tc.x, sk, err)
		}
	}
	if pub, _ := nostr.GetPublicKey("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"); pub != "84bf7562262bbd6940085748f3be6afa52ae317155181ece31b66351ccffa4b0" {
		t.Errorf("slot %s", pub)
	}
	for _, zero := range []string{strings.Repeat("00", 32), "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"} {
		if _, err := slotKey(unhex(t, zero)); err == nil {
			t.Errorf("x %s gave a key", zero)
		}
	}
}

// TestDeliverNeverSkipsSilently: once a closing subscription drops an event,
// it drops every later one too, also when its buffer has room again, so a
// reader tracking a cursor never receives an event after a gap.
func TestDeliverNeverSkipsSilently(t *testing.T) {
	c := &Client{closing: make(chan struct{})}
	s := &Subscription{Events: make(chan Delivered, 1), Done: make(chan struct{}), c: c}
	first, second, third := Delivered{Seq: 1}, Delivered{Seq: 2}, Delivered{Seq: 3}
	s.deliver(first) // buffered
	close(c.closing)
	s.deliver(second) // buffer full, client closing: dropped
	if got := <-s.Events; got.Seq != 1 {
		t.Fatalf("got seq %d, want 1", got.Seq)
	}
	s.deliver(third) // room again, but after a drop
	select {
	case got := <-s.Events:
		t.Fatalf("seq %d delivered after seq 2 was dropped", got.Seq)
	default:
	}
}
