package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

func ts(v int64) *nostr.Timestamp {
	t := nostr.Timestamp(v)
	return &t
}

func checkNIP11(_ context.Context, e *env) (string, error) {
	if e.info == nil {
		return "", e.infoErr
	}
	for _, field := range []string{"name", "description", "pubkey", "contact", "software", "version"} {
		raw, ok := e.info.raw[field]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("NIP-11 field %q is not a string: %s", field, raw)
		}
	}
	if e.info.header.Get("Access-Control-Allow-Origin") == "" {
		return "", errors.New("NIP-11 response to a request with an Origin has no Access-Control-Allow-Origin header")
	}
	if _, ok := e.info.raw["supported_nips"]; !ok {
		return "document has no supported_nips", nil
	}
	return fmt.Sprintf("supported_nips %v", e.info.SupportedNIPs), nil
}

// checkOK, checkEOSE and checkLiveAfterEOSE use the suite's own raw client:
// go-nostr's Relay type reports a publish as successful when the connection
// drops before the OK, and its close path races (go test -race reports it).
func checkOK(ctx context.Context, e *env) (string, error) {
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	k := newKey()
	return "", c.mustStore(ctx, k.event(1, now(), nil, "conformance: OK after EVENT"))
}

func checkEOSE(ctx context.Context, e *env) (string, error) {
	k := newKey()
	ev := k.event(1, now(), nil, "conformance: EOSE")
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	if err := c.mustStore(ctx, ev); err != nil {
		return "", err
	}
	got, err := c.subscribe(ctx, "eose-"+randomHex(4), nostr.Filter{Authors: []string{k.pk}})
	if err != nil {
		return "", err
	}
	if !sameIDs(got, ev) {
		return "", fmt.Errorf("before EOSE got %s, want %s", ids(got), wantIDs(ev))
	}
	return "", nil
}

func checkLiveAfterEOSE(ctx context.Context, e *env) (string, error) {
	k := newKey()
	sub, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer sub.close()
	subID := "live-" + randomHex(4)
	if _, err := sub.subscribe(ctx, subID, nostr.Filter{Authors: []string{k.pk}}); err != nil {
		return "", err
	}
	ev := k.event(1, now(), nil, "conformance: live after EOSE")
	pub, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer pub.close()
	if err := pub.mustStore(ctx, ev); err != nil {
		return "", err
	}
	got, err := sub.nextEvent(ctx, subID)
	if err != nil {
		return "", fmt.Errorf("event published after EOSE never arrived: %w", err)
	}
	if got.ID != ev.ID {
		return "", fmt.Errorf("unexpected live event %.12s", got.ID)
	}
	return "", nil
}

// expectRefused sends a raw event frame and requires OK false with one of the prefixes.
func expectRefused(ctx context.Context, c *conn, id string, frame []byte, prefixes ...string) (okAnswer, error) {
	if err := c.sendRaw(ctx, frame); err != nil {
		return okAnswer{}, err
	}
	a, err := c.waitOK(ctx, id)
	if err != nil {
		return a, err
	}
	if a.ok {
		return a, fmt.Errorf("relay accepted it: %s", a)
	}
	if !hasPrefix(a.reason, prefixes...) {
		return a, fmt.Errorf("refused, but the reason lacks the %s prefix: %s", strings.Join(prefixes, " or "), a)
	}
	return a, nil
}

func hasPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func eventFrame(ev any) []byte {
	b, err := json.Marshal([]any{"EVENT", ev})
	if err != nil {
		panic(fmt.Sprintf("encode event: %v", err)) // nostr.Event always encodes
	}
	return b
}

func checkVerifyID(ctx context.Context, e *env) (string, error) {
	k := newKey()
	ev := k.event(1, now(), nil, "conformance: wrong id")
	bad := *ev
	bad.ID = flipLastHex(ev.ID)
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	if _, err := expectRefused(ctx, c, bad.ID, eventFrame(bad), "invalid:"); err != nil {
		return "", fmt.Errorf("event whose id is not its hash: %w", err)
	}
	return "", e.expectExactly(ctx, "query for both ids", filters(nostr.Filter{IDs: []string{bad.ID, ev.ID}}))
}

func checkVerifySig(ctx context.Context, e *env) (string, error) {
	k := newKey()
	ev := k.event(1, now(), nil, "conformance: wrong signature")
	other := k.event(1, now(), nil, "conformance: another event")
	bad := *ev
	bad.Sig = other.Sig // well-formed, but signs a different hash
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	if _, err := expectRefused(ctx, c, bad.ID, eventFrame(bad), "invalid:"); err != nil {
		return "", fmt.Errorf("event with a bad signature: %w", err)
	}
	return "", e.expectExactly(ctx, "query for the refused id", filters(nostr.Filter{IDs: []string{bad.ID}}))
}

func flipLastHex(s string) string {
	if s == "" {
		return s
	}
	last := s[len(s)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return s[:len(s)-1] + string(repl)
}

// escapeText holds every character NIP-01 escapes in the id serialization, plus characters
// that must pass through verbatim (non-ASCII, a non-character, things that look like escapes).
const escapeText = "line\nbreak \"quoted\" back\\slash cr\r tab\t bs\b ff\f é ✓ 🦫 \uFFFF </script> \\u0041 \\n"

func checkJSONEscapes(ctx context.Context, e *env) (string, error) {
	k := newKey()
	tags := nostr.Tags{{"t", "tag\nwith \"escapes\"\\"}, {"escapes", escapeText, "\t"}}
	ev := k.event(1, now(), tags, escapeText)
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	if err := c.mustStore(ctx, ev); err != nil {
		return "", err
	}
	return "", expectRoundTrip(ctx, e, ev)
}

// expectRoundTrip reads ev back by id and compares every signed field.
func expectRoundTrip(ctx context.Context, e *env, ev *nostr.Event) error {
	got, err := e.queryOnce(ctx, nostr.Filter{IDs: []string{ev.ID}})
	if err != nil {
		return err
	}
	if len(got) != 1 {
		return fmt.Errorf("query by id returned %d events, want 1", len(got))
	}
	g := got[0]
	switch {
	case g.Content != ev.Content:
		return fmt.Errorf("content changed: sent %q, got %q", ev.Content, g.Content)
	case !reflect.DeepEqual(g.Tags, ev.Tags):
		return fmt.Errorf("tags changed: sent %q, got %q", ev.Tags, g.Tags)
	case g.CreatedAt != ev.CreatedAt:
		return fmt.Errorf("created_at changed: sent %d, got %d", ev.CreatedAt, g.CreatedAt)
	case g.Kind != ev.Kind || g.PubKey != ev.PubKey || g.Sig != ev.Sig:
		return errors.New("kind, pubkey or sig changed")
	case !g.CheckID():
		return errors.New("returned event's id no longer matches its fields")
	}
	return nil
}

// checkJSONAltEscapes sends escapes NIP-01 does not use (\/ and \u00e9) on the wire: JSON says
// they denote the same string, and the id is computed over the decoded string.
func checkJSONAltEscapes(ctx context.Context, e *env) (string, error) {
	k := newKey()
	ev := k.event(1, now(), nil, "A/B é")
	frame := eventFrame(ev)
	alt := strings.Replace(string(frame), `"content":"A/B é"`, `"content":"A\/B \u00e9"`, 1)
	if alt == string(frame) {
		return "", errors.New("internal: could not rewrite the content escapes")
	}
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	if err := c.sendRaw(ctx, []byte(alt)); err != nil {
		return "", err
	}
	a, err := c.waitOK(ctx, ev.ID)
	if err != nil {
		return "", err
	}
	if !a.ok {
		return "", fmt.Errorf("relay refused content written with \\/ and \\u00e9: %s", a)
	}
	return "", expectRoundTrip(ctx, e, ev)
}

// createdAtCase publishes a kind 1 signed over createdAt, written on the wire as wire (or as
// the plain integer when wire is empty). A correct relay either stores and serves it unchanged
// or refuses it with OK false and a policy prefix; it must never store a changed value, answer
// error:, or stay silent.
// createdAtOKBound is how long a created_at case waits for its OK: an answer to a single
// frame on an idle connection needs far less, and a relay that drops the frame should not
// cost the whole check budget.
const createdAtOKBound = 5 * time.Second

func createdAtCase(ctx context.Context, e *env, createdAt int64, wire string) (string, error) {
	k := newKey()
	ev := k.event(1, createdAt, nil, "conformance: created_at "+strconv.FormatInt(createdAt, 10))
	frame := string(eventFrame(ev))
	if wire != "" {
		plain := `"created_at":` + strconv.FormatInt(createdAt, 10)
		frame = strings.Replace(frame, plain, `"created_at":`+wire, 1)
		if !strings.Contains(frame, wire) {
			return "", errors.New("internal: could not rewrite created_at")
		}
	}
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	if err := c.sendRaw(ctx, []byte(frame)); err != nil {
		return "", err
	}
	okCtx, cancel := context.WithTimeout(ctx, createdAtOKBound)
	a, err := c.waitOK(okCtx, ev.ID)
	cancel()
	if err != nil {
		return "", err
	}
	if !a.ok {
		if hasPrefix(a.reason, "invalid:", "blocked:", "restricted:") {
			return "refused: " + a.reason, nil
		}
		return "", fmt.Errorf("refused without a policy prefix (invalid:, blocked:, restricted:): %s", a)
	}
	if err := expectRoundTrip(ctx, e, ev); err != nil {
		return "", fmt.Errorf("accepted, then: %w", err)
	}
	return "accepted and served unchanged", nil
}

func checkOrder(ctx context.Context, e *env) (string, error) {
	k := newKey()
	base := now() - 100
	evs := make([]*nostr.Event, 5)
	for i := range evs {
		evs[i] = k.event(1, base+int64(i), nil, fmt.Sprintf("conformance: order %d", i))
	}
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	for _, i := range []int{2, 0, 4, 1, 3} {
		if err := c.mustStore(ctx, evs[i]); err != nil {
			return "", err
		}
	}
	return "", e.expectExactly(ctx, "events by author", filters(nostr.Filter{Authors: []string{k.pk}}),
		evs[4], evs[3], evs[2], evs[1], evs[0])
}

// sortByID orders events that share a created_at the way NIP-01 asks: lowest id first.
func sortByID(evs []*nostr.Event) {
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && evs[j].ID < evs[j-1].ID; j-- {
			evs[j], evs[j-1] = evs[j-1], evs[j]
		}
	}
}

func checkOrderTies(ctx context.Context, e *env) (string, error) {
	k := newKey()
	t := now() - 100
	older := k.event(1, t-1, nil, "conformance: before the tie")
	tied := []*nostr.Event{
		k.event(1, t, nil, "conformance: tie a"),
		k.event(1, t, nil, "conformance: tie b"),
		k.event(1, t, nil, "conformance: tie c"),
	}
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	for _, ev := range []*nostr.Event{tied[1], older, tied[2], tied[0]} {
		if err := c.mustStore(ctx, ev); err != nil {
			return "", err
		}
	}
	sortByID(tied)
	return "", e.expectExactly(ctx, "events by author", filters(nostr.Filter{Authors: []string{k.pk}}),
		tied[0], tied[1], tied[2], older)
}

func checkLimit(ctx context.Context, e *env) (string, error) {
	k := newKey()
	base := now() - 100
	evs := make([]*nostr.Event, 6)
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	for i := range evs {
		evs[i] = k.event(1, base+int64(i), nil, fmt.Sprintf("conformance: limit %d", i))
	}
	for _, i := range []int{5, 0, 3, 1, 4, 2} {
		if err := c.mustStore(ctx, evs[i]); err != nil {
			return "", err
		}
	}
	return "", e.expectExactly(ctx, "limit 3", filters(nostr.Filter{Authors: []string{k.pk}, Limit: 3}),
		evs[5], evs[4], evs[3])
}

func checkLimitZero(ctx context.Context, e *env) (string, error) {
	k := newKey()
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	if err := c.mustStore(ctx, k.event(1, now()-10, nil, "conformance: stored before limit 0")); err != nil {
		return "", err
	}
	sub, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer sub.close()
	stored, err := sub.subscribe(ctx, "limit0", nostr.Filter{Authors: []string{k.pk}, LimitZero: true})
	if err != nil {
		return "", err
	}
	if len(stored) != 0 {
		return "", fmt.Errorf("limit 0 returned %d stored events before EOSE, want 0", len(stored))
	}
	live := k.event(1, now(), nil, "conformance: live after limit 0")
	if err := c.mustStore(ctx, live); err != nil {
		return "", err
	}
	got, err := sub.nextEvent(ctx, "limit0")
	if err != nil {
		return "", fmt.Errorf("limit 0 subscription got no live event: %w", err)
	}
	if got.ID != live.ID {
		return "", fmt.Errorf("limit 0 subscription got %.12s, want the live event", got.ID)
	}
	return "", nil
}

// storeAll publishes each event on one connection and requires OK true.
func (e *env) storeAll(ctx context.Context, evs ...*nostr.Event) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	for _, ev := range evs {
		if err := c.mustStore(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

func checkFindByID(ctx context.Context, e *env) (string, error) {
	k := newKey()
	a := k.event(1, now()-2, nil, "conformance: find by id a")
	b := k.event(1, now()-1, nil, "conformance: find by id b")
	if err := e.storeAll(ctx, a, b); err != nil {
		return "", err
	}
	return "", e.expectExactly(ctx, "ids [a]", filters(nostr.Filter{IDs: []string{a.ID}}), a)
}

func checkFindByPubkey(ctx context.Context, e *env) (string, error) {
	k1, k2 := newKey(), newKey()
	a := k1.event(1, now()-2, nil, "conformance: find by pubkey a")
	b := k1.event(1, now()-1, nil, "conformance: find by pubkey b")
	other := k2.event(1, now()-1, nil, "conformance: find by pubkey, other author")
	if err := e.storeAll(ctx, a, other, b); err != nil {
		return "", err
	}
	return "", e.expectSet(ctx, "authors [k1]", filters(nostr.Filter{Authors: []string{k1.pk}}), a, b)
}

func checkFindByKind(ctx context.Context, e *env) (string, error) {
	k := newKey()
	note := k.event(1, now()-2, nil, "conformance: kind 1")
	reaction := k.event(7, now()-1, nostr.Tags{{"e", note.ID}, {"p", k.pk}}, "+")
	if err := e.storeAll(ctx, note, reaction); err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "authors [k] kinds [7]",
		filters(nostr.Filter{Authors: []string{k.pk}, Kinds: []int{7}}), reaction); err != nil {
		return "", err
	}
	return "", e.expectSet(ctx, "authors [k] kinds [1 7]",
		filters(nostr.Filter{Authors: []string{k.pk}, Kinds: []int{1, 7}}), note, reaction)
}

func checkFindByTag(ctx context.Context, e *env) (string, error) {
	k1, k2 := newKey(), newKey()
	topic, other := "conformance-"+randomHex(8), "conformance-"+randomHex(8)
	a := k1.event(1, now()-2, nostr.Tags{{"t", topic}}, "conformance: tag a")
	b := k2.event(1, now()-1, nostr.Tags{{"t", other}, {"t", topic}}, "conformance: tag b")
	c := k1.event(1, now()-1, nostr.Tags{{"t", other}}, "conformance: tag c")
	if err := e.storeAll(ctx, a, b, c); err != nil {
		return "", err
	}
	return "", e.expectSet(ctx, "#t [topic]", filters(nostr.Filter{Tags: nostr.TagMap{"t": {topic}}}), a, b)
}

func checkFindByTags(ctx context.Context, e *env) (string, error) {
	k := newKey()
	t1, t2, g := "conformance-"+randomHex(8), "conformance-"+randomHex(8), "conformance-"+randomHex(8)
	both := k.event(1, now()-4, nostr.Tags{{"t", t1}, {"g", g}}, "conformance: t1 and g")
	onlyT := k.event(1, now()-3, nostr.Tags{{"t", t1}}, "conformance: t1 only")
	onlyG := k.event(1, now()-2, nostr.Tags{{"g", g}}, "conformance: g only")
	t2ev := k.event(1, now()-1, nostr.Tags{{"t", t2}}, "conformance: t2")
	if err := e.storeAll(ctx, both, onlyT, onlyG, t2ev); err != nil {
		return "", err
	}
	// Different tag names in one filter must all match (AND)...
	if err := e.expectExactly(ctx, "#t [t1] and #g [g]",
		filters(nostr.Filter{Tags: nostr.TagMap{"t": {t1}, "g": {g}}}), both); err != nil {
		return "", err
	}
	// ...several values of one tag name match any (OR).
	if err := e.expectSet(ctx, "#t [t1 t2]",
		filters(nostr.Filter{Tags: nostr.TagMap{"t": {t1, t2}}}), both, onlyT, t2ev); err != nil {
		return "", err
	}
	return "", e.expectSet(ctx, "author and #g [g]",
		filters(nostr.Filter{Authors: []string{k.pk}, Tags: nostr.TagMap{"g": {g}}}), both, onlyG)
}

// checkTagNameBound catches backends that index tag values without their tag name (eventstore
// postgresql before v0.17.8): {"#h":[X]} must not match an event whose "p" tag is X.
func checkTagNameBound(ctx context.Context, e *env) (string, error) {
	k, target := newKey(), newKey()
	ev := k.event(1, now(), nostr.Tags{{"p", target.pk}}, "conformance: p tag only")
	if err := e.storeAll(ctx, ev); err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "#h [X] where only a p tag holds X",
		filters(nostr.Filter{Tags: nostr.TagMap{"h": {target.pk}}})); err != nil {
		return "", err
	}
	return "", e.expectExactly(ctx, "#p [X]", filters(nostr.Filter{Tags: nostr.TagMap{"p": {target.pk}}}), ev)
}

func checkSinceUntil(ctx context.Context, e *env) (string, error) {
	k := newKey()
	t := now() - 100
	evs := make([]*nostr.Event, 5) // at t-2 … t+2
	for i := range evs {
		evs[i] = k.event(1, t-2+int64(i), nil, fmt.Sprintf("conformance: since/until %d", i))
	}
	if err := e.storeAll(ctx, evs...); err != nil {
		return "", err
	}
	if err := e.expectExactly(ctx, "since t-1 until t+1",
		filters(nostr.Filter{Authors: []string{k.pk}, Since: ts(t - 1), Until: ts(t + 1)}),
		evs[3], evs[2], evs[1]); err != nil {
		return "", err
	}
	return "", e.expectExactly(ctx, "since t until t",
		filters(nostr.Filter{Authors: []string{k.pk}, Since: ts(t), Until: ts(t)}), evs[2])
}

// ephemeralSetup subscribes to a fresh author's ephemeral kind, publishes one event and
// returns it with the subscriber, which has not read it yet.
func ephemeralSetup(ctx context.Context, e *env) (*nostr.Event, *conn, func(), error) {
	k := newKey()
	const kind = 20001
	sub, err := e.dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	pub, err := e.dial(ctx)
	if err != nil {
		sub.close()
		return nil, nil, nil, err
	}
	cleanup := func() { sub.close(); pub.close() }
	if _, err := sub.subscribe(ctx, "eph", nostr.Filter{Authors: []string{k.pk}, Kinds: []int{kind}}); err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	ev := k.event(kind, now(), nil, "conformance: ephemeral")
	if err := pub.mustStore(ctx, ev); err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	return ev, sub, cleanup, nil
}

func checkEphemeralLive(ctx context.Context, e *env) (string, error) {
	ev, sub, cleanup, err := ephemeralSetup(ctx, e)
	if err != nil {
		return "", err
	}
	defer cleanup()
	got, err := sub.nextEvent(ctx, "eph")
	if err != nil {
		return "", fmt.Errorf("subscriber never got the ephemeral event: %w", err)
	}
	if got.ID != ev.ID {
		return "", fmt.Errorf("subscriber got %.12s, want the ephemeral event", got.ID)
	}
	return "", nil
}

func checkEphemeralNotStored(ctx context.Context, e *env) (string, error) {
	ev, _, cleanup, err := ephemeralSetup(ctx, e)
	if err != nil {
		return "", err
	}
	defer cleanup()
	return "", e.expectExactly(ctx, "query for the ephemeral event after it was delivered",
		filters(nostr.Filter{IDs: []string{ev.ID}}, nostr.Filter{Authors: []string{ev.PubKey}}))
}

// publishAny sends each event and waits for its OK, whatever it says: a relay may refuse an
// outdated replaceable version or accept and drop it.
func (e *env) publishAny(ctx context.Context, evs ...*nostr.Event) ([]okAnswer, error) {
	c, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	out := make([]okAnswer, 0, len(evs))
	for _, ev := range evs {
		a, err := c.publish(ctx, ev)
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// slotFilter selects a replaceable (d == "") or addressable slot.
func slotFilter(k key, kind int, d string) nostr.Filter {
	f := nostr.Filter{Authors: []string{k.pk}, Kinds: []int{kind}}
	if d != "" {
		f.Tags = nostr.TagMap{"d": {d}}
	}
	return f
}

func slotTags(d string) nostr.Tags {
	if d == "" {
		return nil
	}
	return nostr.Tags{{"d", d}}
}

// The addressable kind used by the suite: NIP-78 application data, which no Marmot rule touches.
const addrKind = 30078

func replaceNewer(kinds []int, d string) func(context.Context, *env) (string, error) {
	return func(ctx context.Context, e *env) (string, error) {
		for _, kind := range kinds {
			k := newKey()
			old := k.event(kind, now()-10, slotTags(d), "{}")
			newer := k.event(kind, now()-5, slotTags(d), "{}")
			if err := e.storeAll(ctx, old, newer); err != nil {
				return "", err
			}
			if err := e.expectExactly(ctx, fmt.Sprintf("kind %d slot after a newer version", kind),
				filters(slotFilter(k, kind, d)), newer); err != nil {
				return "", err
			}
		}
		return "", nil
	}
}

func replaceOlder(kind int, d string) func(context.Context, *env) (string, error) {
	return func(ctx context.Context, e *env) (string, error) {
		k := newKey()
		newer := k.event(kind, now()-5, slotTags(d), "{}")
		old := k.event(kind, now()-10, slotTags(d), "{}")
		answers, err := e.publishAny(ctx, newer, old)
		if err != nil {
			return "", err
		}
		if !answers[0].ok {
			return "", fmt.Errorf("relay refused the first version: %s", answers[0])
		}
		if err := e.expectExactly(ctx, fmt.Sprintf("kind %d slot after an older version arrived", kind),
			filters(slotFilter(k, kind, d)), newer); err != nil {
			return "", err
		}
		return "older version answered " + answers[1].String(), nil
	}
}

func replaceTie(kind int, d string) func(context.Context, *env) (string, error) {
	return func(ctx context.Context, e *env) (string, error) {
		for _, lowerFirst := range []bool{true, false} {
			k := newKey()
			t := now() - 5
			a := k.event(kind, t, slotTags(d), `{"v":"a"}`)
			b := k.event(kind, t, slotTags(d), `{"v":"b"}`)
			lo, hi := a, b
			if hi.ID < lo.ID {
				lo, hi = hi, lo
			}
			order := []*nostr.Event{hi, lo}
			if lowerFirst {
				order = []*nostr.Event{lo, hi}
			}
			answers, err := e.publishAny(ctx, order...)
			if err != nil {
				return "", err
			}
			if !answers[0].ok {
				return "", fmt.Errorf("relay refused the first version: %s", answers[0])
			}
			what := fmt.Sprintf("kind %d slot, two versions with equal created_at, lower id sent %s",
				kind, map[bool]string{true: "first", false: "second"}[lowerFirst])
			if err := e.expectExactly(ctx, what, filters(slotFilter(k, kind, d)), lo); err != nil {
				return "", err
			}
		}
		return "", nil
	}
}

func checkAddressableSlots(ctx context.Context, e *env) (string, error) {
	k := newKey()
	x := k.event(addrKind, now()-5, slotTags("x"), "{}")
	y := k.event(addrKind, now()-4, slotTags("y"), "{}")
	if err := e.storeAll(ctx, x, y); err != nil {
		return "", err
	}
	return "", e.expectSet(ctx, "both d slots",
		filters(nostr.Filter{Authors: []string{k.pk}, Kinds: []int{addrKind}}), x, y)
}

func checkMaxSubscriptions(ctx context.Context, e *env) (string, error) {
	if e.info == nil {
		return "", skipf("max_subscriptions unknown: NIP-11 document unavailable (%v)", e.infoErr)
	}
	n := e.info.MaxSubscriptions
	if n <= 0 {
		return "", skipf("max_subscriptions not advertised in NIP-11 limitation")
	}
	const probeCap = 1000
	if n > probeCap {
		return "", skipf("max_subscriptions %d is above the %d this check opens", n, probeCap)
	}
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	k := newKey()
	for i := 0; i < n; i++ {
		if _, err := c.subscribe(ctx, fmt.Sprintf("s%d", i), nostr.Filter{Authors: []string{k.pk}}); err != nil {
			return "", fmt.Errorf("subscription %d of the %d advertised: %w", i+1, n, err)
		}
	}
	_, err = c.subscribe(ctx, "over", nostr.Filter{Authors: []string{k.pk}})
	switch {
	case err == nil:
		return "", fmt.Errorf("subscription %d (one past max_subscriptions) got EOSE instead of CLOSED", n+1)
	case errors.Is(err, errClosed):
		return fmt.Sprintf("max_subscriptions %d; extra one refused (%v)", n, err), nil
	default:
		return "", err
	}
}

func checkCount(ctx context.Context, e *env) (string, error) {
	if err := e.requireNIP(45); err != nil {
		return "", err
	}
	k := newKey()
	evs := []*nostr.Event{
		k.event(1, now()-3, nil, "conformance: count 1"),
		k.event(1, now()-2, nil, "conformance: count 2"),
		k.event(7, now()-1, nil, "+"),
	}
	if err := e.storeAll(ctx, evs...); err != nil {
		return "", err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	for _, tc := range []struct {
		f    nostr.Filter
		want int64
	}{
		{nostr.Filter{Authors: []string{k.pk}}, 3},
		{nostr.Filter{Authors: []string{k.pk}, Kinds: []int{1}}, 2},
	} {
		subID := "count-" + randomHex(4)
		if err := c.send(ctx, "COUNT", subID, tc.f); err != nil {
			return "", err
		}
		got, err := c.waitCount(ctx, subID)
		if err != nil {
			return "", err
		}
		if got != tc.want {
			return "", fmt.Errorf("COUNT %s = %d, want %d", tc.f, got, tc.want)
		}
	}
	return "", nil
}

func (c *conn) waitCount(ctx context.Context, subID string) (int64, error) {
	for {
		f, err := c.next(ctx)
		if err != nil {
			return 0, fmt.Errorf("no COUNT answer: %w", err)
		}
		if len(f.elems) < 3 {
			continue
		}
		var got string
		if json.Unmarshal(f.elems[1], &got) != nil || got != subID {
			continue
		}
		switch f.label {
		case "CLOSED":
			return 0, fmt.Errorf("%w: %s", errClosed, closedReason(f))
		case "COUNT":
			var body struct {
				Count *int64 `json:"count"`
			}
			if err := json.Unmarshal(f.elems[2], &body); err != nil || body.Count == nil {
				return 0, fmt.Errorf("COUNT answer without an integer count: %s", f.text)
			}
			return *body.Count, nil
		}
	}
}
