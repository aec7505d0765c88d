package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"
	dto "github.com/prometheus/client_model/go"

	"github.com/burrow-relay/burrow/nip77client"
	"github.com/burrow-relay/burrow/storage"
)

// negResult is what one reconciliation found: ids only the client holds
// (have) and ids only the relay holds (need).
type negResult struct {
	have, need []string
}

// reconcile runs a NIP-77 reconciliation of local against the relay's
// events matching f, as a client (nip77client, over go-nostr's negentropy).
func (c *wsClient) reconcile(subID string, f nostr.Filter, local ...*nostr.Event) negResult {
	c.t.Helper()
	vec := vector.New()
	for _, ev := range local {
		vec.Insert(ev.CreatedAt, ev.ID)
	}
	vec.Seal()
	var res negResult
	sess := nip77client.Session{Sub: subID, Filter: f, FrameLimit: 60_000, Timeout: 10 * time.Second,
		Have: func(id string) { res.have = append(res.have, id) },
		Need: func(id string) { res.need = append(res.need, id) }}
	if _, err := sess.Run(context.Background(), negConn{c}, vec); err != nil {
		c.t.Fatalf("reconciliation %s: %v", subID, err)
	}
	slices.Sort(res.have)
	slices.Sort(res.need)
	return res
}

// negConn is the test client as a nip77client.Conn; anything but NEG-MSG
// and NEG-ERR for the session fails the test.
type negConn struct{ c *wsClient }

func (n negConn) Send(msg []byte) error { n.c.sendRaw(msg); return nil }

func (n negConn) Read(time.Time) (string, []json.RawMessage, error) {
	msg := n.c.read()
	if l := label(msg); l != "NEG-MSG" && l != "NEG-ERR" {
		n.c.t.Fatalf("got %s during the reconciliation, want NEG-MSG or NEG-ERR", joinRaw(msg))
	}
	return label(msg), msg, nil
}

// readNegErr reads the next message, which must be NEG-ERR for subID with
// a reason starting with prefix.
func (c *wsClient) readNegErr(subID, prefix string) string {
	c.t.Helper()
	for {
		msg := c.read()
		if label(msg) == "AUTH" {
			continue // a challenge may come first
		}
		if label(msg) != "NEG-ERR" || len(msg) != 3 || str(msg[1]) != subID || !strings.HasPrefix(str(msg[2]), prefix) {
			c.t.Fatalf("got %s, want NEG-ERR %s %q...", joinRaw(msg), subID, prefix)
		}
		return str(msg[2])
	}
}

// stillServes checks that the connection answers a REQ after an error.
func (c *wsClient) stillServes() {
	c.t.Helper()
	c.send([]any{"REQ", "alive", map[string]any{"limit": 1}})
	c.collect("alive")
	c.send([]any{"CLOSE", "alive"})
}

func sortedIDs(evs ...*nostr.Event) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	slices.Sort(out)
	return out
}

func negConfig() Config { return Config{Negentropy: true} }

// A group's kind 445 log reconciled per h, as Marmot clients repair
// history (issue 16 item 1): the client learns exactly which ids it lacks
// and which only it holds; other groups and kinds stay out; the REQ clamp
// does not cap it.
func TestNegentropyGroupHistory(t *testing.T) {
	eachBackend(t, func(t *testing.T, newStore func(testing.TB) storage.Store) {
		testNegentropyGroupHistory(t, newStore(t))
	})
}

func testNegentropyGroupHistory(t *testing.T, store storage.Store) {
	cfg := negConfig()
	cfg.Limits = testLimits()
	cfg.Limits.MaxLimit = 5 // well below the group's size
	r := startRelay(t, cfg, store)
	c := dial(t, r.url, nil)
	h, other := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	s := newSigner(t)
	var log []*nostr.Event
	for i := range 40 {
		ev := s.event(t, 445, groupContent(fmt.Sprint(i)), nostr.Tags{{"h", h}}, nostr.Timestamp(1_700_000_000+i/3))
		if got := c.publish(ev); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
		log = append(log, ev)
	}
	noise := []*nostr.Event{
		s.event(t, 445, groupContent("other group"), nostr.Tags{{"h", other}}, 0),
		s.event(t, 1, "a note tagging the group", nostr.Tags{{"h", h}}, 0),
	}
	for _, ev := range noise {
		if got := c.publish(ev); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
	}
	// The client holds most of the log, and one event the relay lacks.
	onlyClient := s.event(t, 445, groupContent("never sent"), nostr.Tags{{"h", h}}, 1_700_000_005)
	local := append(slices.Clone(log[:10]), log[13:37]...)
	local = append(local, onlyClient)
	f := nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}

	got := c.reconcile("repair", f, local...)
	want := negResult{have: sortedIDs(onlyClient), need: sortedIDs(append(slices.Clone(log[10:13]), log[37:]...)...)}
	if !slices.Equal(got.have, want.have) || !slices.Equal(got.need, want.need) {
		t.Fatalf("reconciliation found have=%v need=%v, want have=%v need=%v", got.have, got.need, want.have, want.need)
	}
	// A client that holds everything learns there is nothing to do.
	if got := c.reconcile("again", f, log...); len(got.have)+len(got.need) != 0 {
		t.Fatalf("a complete client was told have=%v need=%v", got.have, got.need)
	}
	// An empty client needs the whole log, 40 events past a clamp of 5.
	if got := c.reconcile("empty", f); len(got.need) != len(log) {
		t.Fatalf("an empty client needs %d ids, want %d", len(got.need), len(log))
	}
}

// go-nostr's NIP-77 client pieces (its envelopes, message parser and
// negentropy, over its websocket connection; its Relay type, which
// nip77.NegentropySync uses, has data races of its own) sync both ways
// with the relay (interop, issue 16 item 1).
func TestNegentropyGoNostrClientSyncsBothWays(t *testing.T) {
	r := startRelay(t, negConfig(), newTestStore(t))
	s := newSigner(t)
	var onRelay, onClient, both []*nostr.Event
	for i := range 30 {
		ev := s.event(t, 1, fmt.Sprint("note ", i), nil, nostr.Timestamp(1_700_000_000+i))
		switch i % 3 {
		case 0:
			onRelay = append(onRelay, ev)
		case 1:
			onClient = append(onClient, ev)
		default:
			both = append(both, ev)
		}
	}
	c := dial(t, r.url, nil)
	for _, ev := range append(slices.Clone(onRelay), both...) {
		if got := c.publish(ev); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
	}
	local := map[string]*nostr.Event{}
	vec := vector.New()
	for _, ev := range append(slices.Clone(onClient), both...) {
		local[ev.ID] = ev
		vec.Insert(ev.CreatedAt, ev.ID)
	}
	vec.Seal()
	neg := negentropy.New(vec, 60_000)
	var have, need []string
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); have = slices.Collect(chanSeq(neg.Haves)) }()
	go func() { defer wg.Done(); need = slices.Collect(chanSeq(neg.HaveNots)) }()

	g := dialGoNostr(t, r.url)
	g.next() // the AUTH challenge
	f := nostr.Filter{Kinds: []int{1}}
	g.write(&nip77.OpenEnvelope{SubscriptionID: "sync", Filter: f, Message: neg.Start()})
	for done := false; !done; {
		var buf bytes.Buffer
		if err := g.conn.ReadMessage(g.ctx, &buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		switch env := nip77.ParseNegMessage(buf.String()).(type) {
		case *nip77.MessageEnvelope:
			out, err := neg.Reconcile(env.Message)
			if err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if done = out == ""; !done {
				g.write(&nip77.MessageEnvelope{SubscriptionID: "sync", Message: out})
			}
		default:
			t.Fatalf("got %s during the reconciliation", buf.String())
		}
	}
	g.write(&nip77.CloseEnvelope{SubscriptionID: "sync"})
	wg.Wait()
	if !slices.Equal(sortedStrings(have), sortedIDs(onClient...)) || !slices.Equal(sortedStrings(need), sortedIDs(onRelay...)) {
		t.Fatalf("have %d, need %d; want %d and %d", len(have), len(need), len(onClient), len(onRelay))
	}
	// Up: what only the client had; down: what only the relay had.
	for _, id := range have {
		if got := c.publish(local[id]); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
	}
	g.write(&nostr.ReqEnvelope{SubscriptionID: "down", Filters: nostr.Filters{{IDs: need}}})
	for _, id := range g.stored("down") {
		local[id] = nil
	}
	all := sortedIDs(append(append(slices.Clone(onRelay), onClient...), both...)...)
	if got := sortedStrings(slices.Collect(maps.Keys(local))); !slices.Equal(got, all) {
		t.Fatalf("client holds %d events after the sync, want %d", len(got), len(all))
	}
	if got := c.reconcile("check", f, append(append(slices.Clone(onRelay), onClient...), both...)...); len(got.have)+len(got.need) != 0 {
		t.Fatalf("after the sync the relay still differs: have %v need %v", got.have, got.need)
	}
}

func chanSeq[T any](ch chan T) iter.Seq[T] {
	return func(yield func(T) bool) {
		for v := range ch {
			if !yield(v) {
				return
			}
		}
	}
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Gift wraps stay private under NIP-77 as under REQ (issue 14 item 5): a
// reconciliation of wraps alone needs AUTH; others leave out wraps for
// anybody else.
func TestNegentropyKeepsGiftWrapsPrivate(t *testing.T) {
	r := startRelay(t, negConfig(), newTestStore(t))
	alice, bob, author := newSigner(t), newSigner(t), newSigner(t)
	pub := dial(t, r.url, nil)
	toAlice := newSigner(t).event(t, kindGiftWrap, "for alice", nostr.Tags{{"p", alice.pk}}, 0)
	toBob := newSigner(t).event(t, kindGiftWrap, "for bob", nostr.Tags{{"p", bob.pk}}, 0)
	note := author.event(t, 1, "public", nil, 0)
	for _, ev := range []*nostr.Event{toAlice, toBob, note} {
		if got := pub.publish(ev); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
	}
	pub.send([]any{"NEG-OPEN", "wraps", nostr.Filter{Kinds: []int{kindGiftWrap}}, negentropy.New(vector.New(), 0).Start()})
	pub.readNegErr("wraps", "auth-required:")
	if got := pub.reconcile("all", nostr.Filter{}); !slices.Equal(got.need, sortedIDs(note)) {
		t.Fatalf("an unauthenticated client may reconcile %v, want only the note %s", got.need, note.ID)
	}

	c := dial(t, r.url, nil)
	c.send([]any{"AUTH", authEvent(t, alice, c.authChallenge, r.url, 22242, 0)})
	if ok := c.readOK(); !ok.ok {
		t.Fatalf("AUTH: %+v", ok)
	}
	if got := c.reconcile("all", nostr.Filter{}); !slices.Equal(got.need, sortedIDs(note, toAlice)) {
		t.Fatalf("alice may reconcile %v, want the note and her wrap", got.need)
	}
	if got := c.reconcile("wraps", nostr.Filter{Kinds: []int{kindGiftWrap}}); !slices.Equal(got.need, sortedIDs(toAlice)) {
		t.Fatalf("alice's wraps: %v, want only hers", got.need)
	}
}

// Limits and bad input (issue 16 item 1 and "Bad input"): each gets NEG-ERR
// (or NOTICE when no subscription id can be read) with its reason, and the
// connection stays usable.
func TestNegentropyLimitsAndBadInput(t *testing.T) {
	store := newTestStore(t)
	s := newSigner(t)
	var evs []*nostr.Event
	for i := range 12 {
		evs = append(evs, s.event(t, 1, fmt.Sprint(i), nil, nostr.Timestamp(1_700_000_000+i)))
	}
	for _, ev := range evs {
		if _, err := store.Save(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	start := negentropy.New(vector.New(), 0).Start()
	open := func(c *wsClient, id string, f any) {
		c.send([]any{"NEG-OPEN", id, f, start})
	}
	tests := []struct {
		name  string
		setup func(*Config)
		run   func(t *testing.T, c *wsClient)
	}{
		{"a filter matching more than the id limit is blocked", func(cfg *Config) { cfg.Limits.NegMaxIDs = 10 }, func(t *testing.T, c *wsClient) {
			open(c, "big", nostr.Filter{})
			c.readNegErr("big", "blocked:")
			open(c, "narrow", nostr.Filter{Since: &evs[5].CreatedAt}) // 7 events
			if msg := c.read(); label(msg) != "NEG-MSG" {
				t.Fatalf("narrowed filter: got %s, want NEG-MSG", joinRaw(msg))
			}
		}},
		{"too many open sessions on one connection", func(cfg *Config) { cfg.Limits.NegSessions = 2 }, func(t *testing.T, c *wsClient) {
			for _, id := range []string{"a", "b"} {
				open(c, id, nostr.Filter{})
				if msg := c.read(); label(msg) != "NEG-MSG" {
					t.Fatalf("session %s: got %s", id, joinRaw(msg))
				}
			}
			open(c, "c", nostr.Filter{})
			c.readNegErr("c", "rate-limited:")
			// Re-opening an open id replaces it rather than counting twice.
			open(c, "a", nostr.Filter{})
			if msg := c.read(); label(msg) != "NEG-MSG" {
				t.Fatalf("re-opened a: got %s", joinRaw(msg))
			}
			c.send([]any{"NEG-CLOSE", "b"})
			open(c, "c", nostr.Filter{})
			if msg := c.read(); label(msg) != "NEG-MSG" {
				t.Fatalf("after NEG-CLOSE: got %s", joinRaw(msg))
			}
		}},
		{"the memory of open sessions is bounded per connection", func(cfg *Config) {
			cfg.Limits.NegBytes = negSessionBytes + 20*negKeyBytes
		}, func(t *testing.T, c *wsClient) {
			open(c, "a", nostr.Filter{Until: &evs[5].CreatedAt}) // 6 keys
			if msg := c.read(); label(msg) != "NEG-MSG" {
				t.Fatalf("a: got %s", joinRaw(msg))
			}
			open(c, "b", nostr.Filter{})
			c.readNegErr("b", "rate-limited:")
			c.send([]any{"NEG-CLOSE", "a"})
			open(c, "b", nostr.Filter{}) // 12 keys fit once a is gone
			if msg := c.read(); label(msg) != "NEG-MSG" {
				t.Fatalf("b after closing a: got %s", joinRaw(msg))
			}
		}},
		{"an idle session is closed", func(cfg *Config) { cfg.Limits.NegIdleTimeout = 100 * time.Millisecond }, func(t *testing.T, c *wsClient) {
			open(c, "idle", nostr.Filter{})
			if msg := c.read(); label(msg) != "NEG-MSG" {
				t.Fatalf("got %s", joinRaw(msg))
			}
			c.readNegErr("idle", "closed:")
			c.send([]any{"NEG-MSG", "idle", start})
			c.readNegErr("idle", "closed:")
		}},
		{"NEG-MSG for a session never opened", nil, func(t *testing.T, c *wsClient) {
			c.send([]any{"NEG-MSG", "nobody", start})
			c.readNegErr("nobody", "closed:")
		}},
		{"a malformed message ends the session", nil, func(t *testing.T, c *wsClient) {
			open(c, "s", nostr.Filter{})
			c.read()
			c.send([]any{"NEG-MSG", "s", "61zz"})
			c.readNegErr("s", "invalid:")
			c.send([]any{"NEG-MSG", "s", start})
			c.readNegErr("s", "closed:")
			open(c, "t", nostr.Filter{})
			c.read()
			c.send([]any{"NEG-MSG", "t", "61ffffffffffffffffffff"}) // a bound whose varints never end
			c.readNegErr("t", "invalid:")
		}},
		{"malformed NEG-OPENs", nil, func(t *testing.T, c *wsClient) {
			open(c, "f", "not a filter")
			c.readNegErr("f", "invalid:")
			open(c, "k", map[string]any{"kinds": []int{-1}})
			c.readNegErr("k", "invalid:")
			c.send([]any{"NEG-OPEN", "m", nostr.Filter{}, "xyz"})
			c.readNegErr("m", "invalid:")
			c.send([]any{"NEG-OPEN", "n", nostr.Filter{}})
			c.readNegErr("n", "invalid:")
			c.send([]any{"NEG-OPEN", 42, nostr.Filter{}, start})
			if msg := c.read(); label(msg) != "NOTICE" {
				t.Fatalf("NEG-OPEN without a string id: got %s, want NOTICE", joinRaw(msg))
			}
		}},
		{"a message over the size limit gets NEG-ERR", nil, func(t *testing.T, c *wsClient) {
			open(c, "s", nostr.Filter{})
			c.read()
			c.send([]any{"NEG-MSG", "s", "61" + strings.Repeat("00", testLimits().MaxMessageLength/2)})
			c.readNegErr("s", "invalid: message too large")
		}},
		{"disabled: a NOTICE and no 77 in NIP-11", func(cfg *Config) { cfg.Negentropy = false }, func(t *testing.T, c *wsClient) {
			open(c, "s", nostr.Filter{})
			msg := c.read()
			if label(msg) != "NOTICE" || !strings.Contains(str(msg[1]), "NIP-77") {
				t.Fatalf("got %s, want a NOTICE naming NIP-77", joinRaw(msg))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := negConfig()
			cfg.Limits = testLimits()
			if tt.setup != nil {
				tt.setup(&cfg)
			}
			r := startRelay(t, cfg, store)
			c := dial(t, r.url, nil)
			tt.run(t, c)
			c.stillServes()
			if got, want := slices.Contains(r.srv.supportedNIPs(), any(77)), cfg.Negentropy; got != want {
				t.Fatalf("NIP-11 lists 77: %v, want %v", got, want)
			}
		})
	}
}

// The memory an address's sessions hold is given back when they end,
// however they end (closed, replaced, idle, the connection gone).
func TestNegentropyGivesMemoryBack(t *testing.T) {
	store := newTestStore(t)
	s := newSigner(t)
	for i := range 5 {
		if _, err := store.Save(context.Background(), s.event(t, 1, fmt.Sprint(i), nil, 0)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := negConfig()
	cfg.Limits = testLimits()
	cfg.Limits.NegIdleTimeout = 200 * time.Millisecond
	r := startRelay(t, cfg, store)
	start := negentropy.New(vector.New(), 0).Start()
	loopback := netip.MustParseAddr("127.0.0.1")
	// held is the bytes the address's sessions hold and the sessions the
	// gauge counts; a session's end updates them one after the other, so
	// they are compared once both have settled.
	held := func() (int, int) {
		var m dto.Metric
		if err := r.srv.metrics.negSessions.Write(&m); err != nil {
			t.Fatal(err)
		}
		return r.srv.negBytes.Used(loopback), int(m.GetGauge().GetValue())
	}
	holds := func(sessions int) bool {
		n, open := held()
		return n == sessions*(negSessionBytes+5*negKeyBytes) && open == sessions
	}
	c := dial(t, r.url, nil)
	for _, id := range []string{"a", "b", "c"} {
		c.send([]any{"NEG-OPEN", id, nostr.Filter{}, start})
		c.read()
	}
	if n, open := held(); !holds(3) {
		t.Fatalf("three sessions: %d bytes held, %d counted by burrow_negentropy_sessions; want %d and 3", n, open, 3*(negSessionBytes+5*negKeyBytes))
	}
	c.send([]any{"NEG-CLOSE", "a"})
	c.send([]any{"NEG-OPEN", "b", nostr.Filter{Limit: 1}, start}) // replaced
	c.read()
	eventually(t, "one session closed, one replaced", func() bool { return holds(2) })
	// Both idle: c (older) and the replacement b time out.
	for range 2 {
		if msg := c.read(); label(msg) != "NEG-ERR" || !strings.HasPrefix(str(msg[2]), "closed:") {
			t.Fatalf("got %s, want NEG-ERR closed:", joinRaw(msg))
		}
	}
	eventually(t, "idle sessions given back", func() bool { return holds(0) })
	c.send([]any{"NEG-OPEN", "d", nostr.Filter{}, start})
	c.read()
	_ = c.conn.Close()
	eventually(t, "a closed connection's sessions given back", func() bool { return holds(0) })
}

// negStartFor is a client's first negentropy message over n made-up
// events: large enough to be split into fingerprinted ranges.
func negStartFor(t testing.TB, n int) string {
	t.Helper()
	vec := vector.New()
	for i := range n {
		vec.Insert(nostr.Timestamp(1_700_000_000+i/4), fmt.Sprintf("%064x", i*7919))
	}
	vec.Seal()
	return negentropy.New(vec, 0).Start()
}

// FuzzNegentropyRound feeds arbitrary messages that pass the relay's
// check (non-empty lowercase hex, negHexMessage) to the relay's side of a
// reconciliation over its own key storage: a round either fails with an
// error (the session then ends with NEG-ERR) or answers a well-formed
// message; it never panics past negRound, and the storage's answers agree
// with go-nostr's vector over the same keys.
func FuzzNegentropyRound(f *testing.F) {
	var keys []storage.Key
	ref := vector.New()
	for i := range 300 {
		var k storage.Key
		k.CreatedAt = int64(1_700_000_000 + i/3)
		k.ID[0], k.ID[1], k.ID[31] = byte(i>>8), byte(i), byte(i*37)
		keys = append(keys, k)
		ref.Insert(nostr.Timestamp(k.CreatedAt), fmt.Sprintf("%x", k.ID))
	}
	slices.SortFunc(keys, compareKeys)
	ref.Seal()
	for _, seed := range []string{negStartFor(f, 40), negStartFor(f, 400), "61", "60", "6100", "61ffffffffffffffffff", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		if _, ok := negHexMessage(json.RawMessage(strconv.Quote(msg))); !ok {
			return // refused before any round (the decoder echoes input bytes, uppercase hex included)
		}
		ours, err := negRound(negentropy.New(newKeyVector(keys), negFrameLimit), msg)
		theirs, refErr := negRound(negentropy.New(ref, negFrameLimit), msg)
		if (err == nil) != (refErr == nil) || ours != theirs {
			t.Fatalf("keyVector answered %q (%v), go-nostr's vector %q (%v)", ours, err, theirs, refErr)
		}
		if err == nil {
			if _, ok := negHexMessage(json.RawMessage(`"` + ours + `"`)); !ok || !strings.HasPrefix(ours, "61") {
				t.Fatalf("answer %q is not a version 1 hex message", ours)
			}
		}
	})
}

// The per-address budget holds across connections: what one connection's
// session holds is not available to another connection of the address.
func TestNegentropyMemoryPerAddress(t *testing.T) {
	store := newTestStore(t)
	s := newSigner(t)
	for i := range 12 {
		if _, err := store.Save(context.Background(), s.event(t, 1, fmt.Sprint(i), nil, nostr.Timestamp(1_700_000_000+i))); err != nil {
			t.Fatal(err)
		}
	}
	cfg := negConfig()
	cfg.Limits = testLimits()
	cfg.Limits.NegBytes = negSessionBytes + 20*negKeyBytes
	cfg.Limits.NegBytesPerIP = 2*negSessionBytes + 20*negKeyBytes // 12 keys on one connection leave 8
	r := startRelay(t, cfg, store)
	start := negentropy.New(vector.New(), 0).Start()
	c1, c2 := dial(t, r.url, nil), dial(t, r.url, nil)
	c1.send([]any{"NEG-OPEN", "a", nostr.Filter{}, start}) // 12 keys
	if msg := c1.read(); label(msg) != "NEG-MSG" {
		t.Fatalf("first connection: got %s", joinRaw(msg))
	}
	// The address has room for one more session of 8 keys at most.
	c2.send([]any{"NEG-OPEN", "b", nostr.Filter{}, start})
	c2.readNegErr("b", "rate-limited:")
	until := nostr.Timestamp(1_700_000_007) // 8 keys
	c2.send([]any{"NEG-OPEN", "b", nostr.Filter{Until: &until}, start})
	if msg := c2.read(); label(msg) != "NEG-MSG" {
		t.Fatalf("a session that fits: got %s", joinRaw(msg))
	}
	c2.send([]any{"NEG-CLOSE", "b"})
	c1.send([]any{"NEG-CLOSE", "a"})
	// Each connection handles its messages in order: once both answer a
	// REQ, both sessions are closed.
	c1.stillServes()
	c2.stillServes()
	c2.send([]any{"NEG-OPEN", "b", nostr.Filter{}, start})
	if msg := c2.read(); label(msg) != "NEG-MSG" {
		t.Fatalf("after the first connection closed its session: got %s", joinRaw(msg))
	}
}
