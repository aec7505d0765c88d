package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip42"
	"github.com/nbd-wtf/go-nostr/nip86"
)

// goNostrClient is go-nostr's client connection and envelopes (its Relay
// type is not used: its close path has data races of its own).
type goNostrClient struct {
	t      *testing.T
	ctx    context.Context
	conn   *nostr.Connection
	parser nostr.MessageParser
}

func dialGoNostr(t *testing.T, url string) *goNostrClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	conn, err := nostr.NewConnection(ctx, url, nil, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &goNostrClient{t: t, ctx: ctx, conn: conn, parser: nostr.NewMessageParser()}
}

func (g *goNostrClient) next() nostr.Envelope {
	g.t.Helper()
	var buf bytes.Buffer
	if err := g.conn.ReadMessage(g.ctx, &buf); err != nil {
		g.t.Fatalf("read: %v", err)
	}
	env, err := g.parser.ParseMessage(buf.String())
	if err != nil {
		g.t.Fatalf("parse %s: %v", buf.String(), err)
	}
	return env
}

func (g *goNostrClient) write(env nostr.Envelope) {
	g.t.Helper()
	b, err := env.MarshalJSON()
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.conn.WriteMessage(g.ctx, b); err != nil {
		g.t.Fatalf("write: %v", err)
	}
}

// stored collects a subscription's events up to EOSE.
func (g *goNostrClient) stored(sub string) []string {
	g.t.Helper()
	var ids []string
	for {
		switch env := g.next().(type) {
		case *nostr.EventEnvelope:
			ids = append(ids, env.Event.ID)
		case *nostr.EOSEEnvelope:
			if string(*env) != sub {
				g.t.Fatalf("EOSE for %s, want %s", *env, sub)
			}
			return ids
		default:
			g.t.Fatalf("got %v while waiting for %s's EOSE", env, sub)
		}
	}
}

// expectAuthRequired reads the AUTH challenge again, then CLOSED
// auth-required: for sub.
func (g *goNostrClient) expectAuthRequired(sub, challenge string) {
	g.t.Helper()
	if env, ok := g.next().(*nostr.AuthEnvelope); !ok || env.Challenge == nil || *env.Challenge != challenge {
		g.t.Fatalf("want the AUTH challenge again, got %v", env)
	}
	env, ok := g.next().(*nostr.ClosedEnvelope)
	if !ok || env.SubscriptionID != sub || !strings.HasPrefix(env.Reason, "auth-required:") {
		g.t.Fatalf("want CLOSED %s auth-required:, got %v", sub, env)
	}
}

func (g *goNostrClient) count(sub string, f nostr.Filter) int64 {
	g.t.Helper()
	g.write(&nostr.CountEnvelope{SubscriptionID: sub, Filter: f})
	env, ok := g.next().(*nostr.CountEnvelope)
	if !ok || env.SubscriptionID != sub || env.Count == nil {
		g.t.Fatalf("want COUNT %s, got %v", sub, env)
	}
	return *env.Count
}

// Gift wraps are private (issue 14 item 5): served, stored or live, only to
// a client authenticated with NIP-42 as the wrap's p; a REQ or COUNT for
// wraps alone gets the AUTH challenge and CLOSED auth-required:; other
// requests silently leave others' wraps out. Writing a wrap needs no AUTH,
// and kind 445 never needs AUTH. The client is go-nostr's.
func TestGiftWrapsArePrivate(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	alice, bob, sender := newSigner(t), newSigner(t), newSigner(t)
	wrap := func(to signer, content string) *nostr.Event {
		return newSigner(t).event(t, kindGiftWrap, content, nostr.Tags{{"p", to.pk}}, 0)
	}
	pub := dial(t, r.url, nil) // never authenticates
	toAlice, toBob := wrap(alice, "for alice"), wrap(bob, "for bob")
	note := sender.event(t, 1, "public", nil, 0)
	for _, ev := range []*nostr.Event{toAlice, toBob, note} {
		if got := pub.publish(ev); !got.ok {
			t.Fatalf("publishing without AUTH: %+v", got)
		}
	}
	group := sender.event(t, 445, groupContent("g"), nostr.Tags{{"h", strings.Repeat("ab", 32)}}, 0)
	if got := pub.publish(group); !got.ok {
		t.Fatalf("kind 445 without AUTH: %+v", got)
	}

	var doc struct {
		GiftWraps struct {
			Kind      int  `json:"kind"`
			ReadAuth  bool `json:"read_auth_required"`
			WriteAuth bool `json:"write_auth_required"`
		} `json:"gift_wraps"`
		GroupEvents struct {
			AuthRequired bool `json:"auth_required"`
		} `json:"group_events"`
	}
	raw, _ := json.Marshal(fetchNIP11(t, r))
	if err := json.Unmarshal(raw, &doc); err != nil || doc.GiftWraps.Kind != kindGiftWrap || !doc.GiftWraps.ReadAuth ||
		doc.GiftWraps.WriteAuth || doc.GroupEvents.AuthRequired {
		t.Fatalf("NIP-11 gift_wraps %+v, group_events %+v (%v)", doc.GiftWraps, doc.GroupEvents, err)
	}

	g := dialGoNostr(t, r.url)
	first, ok := g.next().(*nostr.AuthEnvelope)
	if !ok || first.Challenge == nil {
		t.Fatal("first message is not an AUTH challenge")
	}
	challenge := *first.Challenge

	g.write(&nostr.ReqEnvelope{SubscriptionID: "wraps", Filters: nostr.Filters{{Kinds: []int{kindGiftWrap}}}})
	g.expectAuthRequired("wraps", challenge)
	g.write(&nostr.CountEnvelope{SubscriptionID: "n", Filter: nostr.Filter{Kinds: []int{kindGiftWrap}}})
	g.expectAuthRequired("n", challenge)
	g.write(&nostr.ReqEnvelope{SubscriptionID: "mixed", Filters: nostr.Filters{{Kinds: []int{1, kindGiftWrap}}}})
	if got := g.stored("mixed"); len(got) != 1 || got[0] != note.ID {
		t.Fatalf("unauthenticated mixed REQ got %v, want only the note", got)
	}
	g.write(&nostr.ReqEnvelope{SubscriptionID: "byid", Filters: nostr.Filters{{IDs: []string{toAlice.ID}}}})
	if got := g.stored("byid"); len(got) != 0 {
		t.Fatalf("unauthenticated REQ by id got %v", got)
	}
	g.write(&nostr.ReqEnvelope{SubscriptionID: "group", Filters: nostr.Filters{{Kinds: []int{445}}}})
	if got := g.stored("group"); len(got) != 1 || got[0] != group.ID {
		t.Fatalf("kind 445 without AUTH got %v", got)
	}
	if n := g.count("all", nostr.Filter{}); n != 2 {
		t.Fatalf("unauthenticated COUNT of everything = %d, want 2 (the note and the group event)", n)
	}

	ae := nip42.CreateUnsignedAuthEvent(challenge, alice.pk, r.url)
	if err := ae.Sign(alice.sk); err != nil {
		t.Fatal(err)
	}
	g.write(&nostr.AuthEnvelope{Event: ae})
	if ok, _ := g.next().(*nostr.OKEnvelope); ok == nil || !ok.OK {
		t.Fatalf("AUTH answer %+v, want OK true", ok)
	}
	g.write(&nostr.ReqEnvelope{SubscriptionID: "wraps", Filters: nostr.Filters{{Kinds: []int{kindGiftWrap}}}})
	if got := g.stored("wraps"); len(got) != 1 || got[0] != toAlice.ID {
		t.Fatalf("alice's wraps: got %v, want only hers", got)
	}
	g.write(&nostr.ReqEnvelope{SubscriptionID: "bobs", Filters: nostr.Filters{{Kinds: []int{kindGiftWrap}, Tags: nostr.TagMap{"p": {bob.pk}}}}})
	if got := g.stored("bobs"); len(got) != 0 {
		t.Fatalf("bob's wraps served to alice: %v", got)
	}
	if n := g.count("mine", nostr.Filter{Kinds: []int{kindGiftWrap}}); n != 1 {
		t.Fatalf("COUNT of alice's wraps = %d, want 1", n)
	}
	if n := g.count("all2", nostr.Filter{}); n != 3 {
		t.Fatalf("COUNT of everything = %d, want 3 (note, group event, alice's wrap)", n)
	}

	// Live: the subscriptions "wraps" and "mixed" (opened before AUTH) get
	// alice's new wrap, nobody gets bob's.
	liveBob, liveAlice := wrap(bob, "live for bob"), wrap(alice, "live for alice")
	for _, ev := range []*nostr.Event{liveBob, liveAlice} {
		if got := pub.publish(ev); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
	}
	got := map[string]string{}
	for len(got) < 2 {
		env, ok := g.next().(*nostr.EventEnvelope)
		if !ok {
			t.Fatalf("want live events, got %v", env)
		}
		if env.Event.ID != liveAlice.ID {
			t.Fatalf("live subscription %s got %s, want only alice's wrap", *env.SubscriptionID, env.Event.ID)
		}
		got[*env.SubscriptionID] = env.Event.ID
	}
	if got["wraps"] == "" || got["mixed"] == "" {
		t.Fatalf("live deliveries %v, want one on wraps and one on mixed", got)
	}
}

// publishVanish dials with the given Host header and sends a kind 62
// naming relayTag.
func publishVanish(t *testing.T, r *testRelay, host, relayTag string, s signer) okResult {
	t.Helper()
	c := dial(t, r.url, http.Header{"Host": {host}})
	return c.publish(s.event(t, kindVanish, "", nostr.Tags{{"relay", relayTag}}, 0))
}

// No replayed erasure (issue 14 item 6). Without --service-url a request
// to vanish that names a relay is refused, whatever Host the client sends:
// a user's request to another relay replayed here with that relay's name as
// Host erases nothing. ALL_RELAYS applies as before, and AUTH still works,
// matched against the connection's Host.
func TestVanishWithoutServiceURL(t *testing.T) {
	store := newTestStore(t)
	r := startRelayWithoutServiceURL(t, Config{}, store)
	victim := newSigner(t)
	kept := victim.event(t, 1, "still here", nil, 0)
	dial(t, r.url, nil).publish(kept)

	// The replay: signed by the victim for other.example, sent here with
	// Host: other.example.
	if got := publishVanish(t, r, "other.example", "wss://other.example", victim); got.ok || got.msg != vanishNeedsServiceURL {
		t.Fatalf("replayed request to vanish: %+v", got)
	}
	// Naming this relay by the URL the client used is refused too: the
	// relay cannot tell that name from a replayed one.
	hostURL := strings.TrimPrefix(r.url, "ws://")
	if got := publishVanish(t, r, hostURL, r.url, victim); got.ok || got.msg != vanishNeedsServiceURL {
		t.Fatalf("request naming the Host URL: %+v", got)
	}
	if n, _ := store.Count(context.Background(), nostr.Filter{IDs: []string{kept.ID}}); n != 1 {
		t.Fatal("a refused request to vanish erased the author's events")
	}

	// AUTH works against the Host.
	c := dialAs(t, r, &victim)
	if got := c.publish(victim.event(t, 1, "protected", nostr.Tags{{"-"}}, 0)); !got.ok {
		t.Fatalf("protected publish after AUTH against the Host: %+v", got)
	}

	other := newSigner(t)
	otherNote := other.event(t, 1, "bye", nil, 0)
	dial(t, r.url, nil).publish(otherNote)
	if got := publishVanish(t, r, hostURL, "ALL_RELAYS", other); !got.ok {
		t.Fatalf("ALL_RELAYS request: %+v", got)
	}
	if n, _ := store.Count(context.Background(), nostr.Filter{IDs: []string{otherNote.ID}}); n != 0 {
		t.Fatal("ALL_RELAYS request to vanish did not erase")
	}
}

// With --service-url, a request to vanish, AUTH's relay tag and NIP-86's u
// tag must name it, whatever Host or X-Forwarded-Host the client sends.
func TestServiceURLDecides(t *testing.T) {
	const service = "wss://burrow.example"
	admin := newSigner(t)
	store := newTestStore(t)
	r := startRelay(t, Config{ServiceURL: service, Admins: []string{admin.pk}}, store)
	hostURL := strings.TrimPrefix(r.url, "ws://")

	victim := newSigner(t)
	kept := victim.event(t, 1, "still here", nil, 0)
	dial(t, r.url, nil).publish(kept)
	if got := publishVanish(t, r, "other.example", "wss://other.example", victim); got.ok || got.msg != "invalid: request to vanish names another relay" {
		t.Fatalf("replayed request to vanish: %+v", got)
	}
	if got := publishVanish(t, r, hostURL, r.url, victim); got.ok {
		t.Fatalf("request naming the Host, not the service URL, accepted: %+v", got)
	}
	if n, _ := store.Count(context.Background(), nostr.Filter{IDs: []string{kept.ID}}); n != 1 {
		t.Fatal("a refused request to vanish erased the author's events")
	}
	if got := publishVanish(t, r, hostURL, service+"/", victim); !got.ok {
		t.Fatalf("request naming the service URL: %+v", got)
	}
	if n, _ := store.Count(context.Background(), nostr.Filter{IDs: []string{kept.ID}}); n != 0 {
		t.Fatal("request naming the service URL did not erase")
	}

	// AUTH: the relay tag must be the service URL, not the Host.
	c := dial(t, r.url, nil)
	challenge := c.authChallenge
	s := newSigner(t)
	hostAuth := authEvent(t, s, challenge, r.url, 22242, 0)
	c.send([]any{"AUTH", hostAuth})
	if got := c.readOK(); got.ok || got.msg != "invalid: AUTH relay URL does not name this relay" {
		t.Fatalf("AUTH naming the Host: %+v", got)
	}
	c.send([]any{"AUTH", authEvent(t, s, challenge, service, 22242, 0)})
	if got := c.readOK(); !got.ok {
		t.Fatalf("AUTH naming the service URL: %+v", got)
	}

	// NIP-86: the u tag must be the service URL's http twin.
	call := func(u string, header http.Header) nip86.Response {
		body, _ := json.Marshal(nip86.Request{Method: "supportedmethods", Params: []any{}})
		sum := sha256.Sum256(body)
		auth := admin.event(t, 27235, "", nostr.Tags{{"u", u}, {"method", "POST"}, {"payload", hex.EncodeToString(sum[:])}}, 0)
		return postManagementWith(t, r, body, auth, header)
	}
	if resp := call(r.httpURL(), nil); resp.Error == "" {
		t.Fatal("NIP-86 call naming the Host accepted")
	}
	if resp := call("https://burrow.example", nil); resp.Error != "" {
		t.Fatalf("NIP-86 call naming the service URL: %s", resp.Error)
	}
}

// Without --service-url, NIP-86's u tag is matched against the Host; an
// X-Forwarded-Host from a peer that is not a trusted proxy is ignored.
func TestManagementForwardedHostOnlyFromTrustedProxies(t *testing.T) {
	admin := newSigner(t)
	r := startRelayWithoutServiceURL(t, Config{Admins: []string{admin.pk}}, newTestStore(t))
	body, _ := json.Marshal(nip86.Request{Method: "supportedmethods", Params: []any{}})
	sum := sha256.Sum256(body)
	auth := admin.event(t, 27235, "", nostr.Tags{{"u", "http://forged.example"}, {"method", "POST"}, {"payload", hex.EncodeToString(sum[:])}}, 0)
	header := http.Header{"X-Forwarded-Host": {"forged.example"}, "X-Forwarded-Proto": {"http"}}
	if resp := postManagementWith(t, r, body, auth, header); resp.Error == "" {
		t.Fatal("u tag matched a forged X-Forwarded-Host")
	}
	ok := admin.event(t, 27235, "", nostr.Tags{{"u", r.httpURL()}, {"method", "POST"}, {"payload", hex.EncodeToString(sum[:])}}, 0)
	if resp := postManagementWith(t, r, body, ok, nil); resp.Error != "" {
		t.Fatalf("u tag naming the Host: %s", resp.Error)
	}
}

func postManagementWith(t *testing.T, r *testRelay, body []byte, auth *nostr.Event, header http.Header) nip86.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.httpURL(), bytes.NewReader(body))
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/nostr+json+rpc")
	if auth != nil {
		aj, _ := json.Marshal(auth)
		req.Header.Set("Authorization", "Nostr "+base64.StdEncoding.EncodeToString(aj))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out nip86.Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decoding NIP-86 response: %v", err)
	}
	return out
}
