package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// NIP-67 EOSE hints (DESIGN.md "History repair and completeness") and
// overlapping since_seq re-reads.

// untilEOSE reads subID's messages up to its EOSE and returns the EVENT
// messages before it and the EOSE's hint. Every EOSE must be
// ["EOSE",<sub>,[<hint>]] with a hint of "finish" or "more".
func (c *wsClient) untilEOSE(subID string) (events [][]json.RawMessage, hint string) {
	c.t.Helper()
	for {
		msg := c.read()
		if len(msg) < 2 || str(msg[1]) != subID {
			c.t.Fatalf("got %s while waiting for %s's EOSE", joinRaw(msg), subID)
		}
		switch label(msg) {
		case "EVENT":
			events = append(events, msg)
		case "EOSE":
			var hints []string
			if len(msg) != 3 || json.Unmarshal(msg[2], &hints) != nil || len(hints) != 1 ||
				(hints[0] != eoseFinish && hints[0] != eoseMore) {
				c.t.Fatalf("EOSE %s, want [\"EOSE\",%q,[\"finish\"|\"more\"]]", joinRaw(msg), subID)
			}
			return events, hints[0]
		default:
			c.t.Fatalf("got %s while waiting for %s's EOSE", joinRaw(msg), subID)
		}
	}
}

// storedIDs is the ids of plain (three-element) EVENT messages, in order,
// failing on a repeat.
func storedIDs(t *testing.T, msgs [][]json.RawMessage) []string {
	t.Helper()
	var ids []string
	seen := map[string]bool{}
	for _, m := range msgs {
		if len(m) != 3 {
			t.Fatalf("EVENT %s, want three elements", joinRaw(m))
		}
		id := decodeEvent(t, m[2]).ID
		if seen[id] {
			t.Fatalf("event %s sent twice before EOSE", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids
}

// newestFirst orders events as a REQ sends them (created_at descending,
// ties by id ascending) and returns their ids.
func newestFirst(evs []*nostr.Event) []string {
	evs = slices.Clone(evs)
	slices.SortFunc(evs, func(a, b *nostr.Event) int {
		if a.CreatedAt != b.CreatedAt {
			return int(b.CreatedAt - a.CreatedAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

func TestEOSEHintsPlainReq(t *testing.T) {
	limits := testLimits()
	limits.MaxLimit = 5 // the clamp
	r := startRelay(t, Config{Limits: limits}, newTestStore(t))
	pub := dial(t, r.url, nil)
	s := newSigner(t)
	base := nostr.Now() - 1000
	// kind 1: 12 events (more than the clamp); kind 7: 3; kind 9: exactly
	// the clamp (5).
	byKind := map[int][]*nostr.Event{}
	for kind, n := range map[int]int{1: 12, 7: 3, 9: 5} {
		for i := range n {
			ev := s.event(t, kind, fmt.Sprint(kind, "/", i), nil, base+nostr.Timestamp(i))
			if got := pub.publish(ev); !got.ok {
				t.Fatalf("publish: %+v", got)
			}
			byKind[kind] = append(byKind[kind], ev)
		}
	}
	// newest returns the ids a filter on kind with limit n must send.
	newest := func(kind, n int) []string { return newestFirst(byKind[kind])[:n] }
	cat := func(lists ...[]string) []string { return slices.Concat(lists...) }

	tests := []struct {
		name    string
		filters string // the REQ's filters, JSON
		want    []string
		hint    string
	}{
		{"fewer matches than the limit", `{"kinds":[7],"limit":4}`, newest(7, 3), eoseFinish},
		{"exactly limit matches", `{"kinds":[7],"limit":3}`, newest(7, 3), eoseFinish},
		{"more matches than the limit", `{"kinds":[7],"limit":2}`, newest(7, 2), eoseMore},
		{"limit 1 of 3", `{"kinds":[7],"limit":1}`, newest(7, 1), eoseMore},
		{"no limit, fewer than the clamp", `{"kinds":[7]}`, newest(7, 3), eoseFinish},
		{"no limit, exactly the clamp", `{"kinds":[9]}`, newest(9, 5), eoseFinish},
		{"no limit, more than the clamp", `{"kinds":[1]}`, newest(1, 5), eoseMore},
		{"limit above the clamp, more than the clamp", `{"kinds":[1],"limit":100}`, newest(1, 5), eoseMore},
		{"limit above the clamp, exactly the clamp", `{"kinds":[9],"limit":100}`, newest(9, 5), eoseFinish},
		{"no match", `{"kinds":[2]}`, nil, eoseFinish},
		{"ids", `{"ids":["` + byKind[1][0].ID + `"]}`, []string{byKind[1][0].ID}, eoseFinish},
		{"limit 0 asks for no stored events", `{"kinds":[1],"limit":0}`, nil, eoseFinish},
		{"several filters, none cut", `{"kinds":[7]},{"kinds":[9]}`, cat(newest(7, 3), newest(9, 5)), eoseFinish},
		{"several filters, the last cut", `{"kinds":[7]},{"kinds":[1],"limit":2}`, cat(newest(7, 3), newest(1, 2)), eoseMore},
		{"several filters, the first cut", `{"kinds":[1],"limit":2},{"kinds":[7]}`, cat(newest(1, 2), newest(7, 3)), eoseMore},
		{"several filters, one cut by the clamp", `{"kinds":[9]},{"kinds":[1]}`, cat(newest(9, 5), newest(1, 5)), eoseMore},
		{"limit 0 beside a cut filter", `{"kinds":[9],"limit":0},{"kinds":[7],"limit":2}`, newest(7, 2), eoseMore},
		{"limit 0 beside a complete filter", `{"kinds":[1],"limit":0},{"kinds":[7]}`, newest(7, 3), eoseFinish},
		// The first filter's one-past-the-limit row is read but not sent:
		// had it been recorded as sent, the second filter would skip it.
		{"the row past the limit is not recorded as sent", `{"kinds":[7],"limit":2},{"kinds":[7]}`, newest(7, 3), eoseMore},
	}
	c := dial(t, r.url, nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			sub := "q" + strconv.Itoa(i)
			c.sendRaw([]byte(`["REQ","` + sub + `",` + tt.filters + `]`))
			defer c.send([]any{"CLOSE", sub}) // also when the test fails: nothing live on it later
			msgs, hint := c.untilEOSE(sub)
			if got := storedIDs(t, msgs); !slices.Equal(got, tt.want) {
				t.Fatalf("sent %d events %v, want %d %v", len(got), got, len(tt.want), tt.want)
			}
			if hint != tt.hint {
				t.Fatalf("EOSE hint %q, want %q", hint, tt.hint)
			}
		})
	}

	// A cut plain REQ still goes live (NIP-01): "more" is only a hint.
	c.t = t
	c.send([]any{"REQ", "live", map[string]any{"kinds": []int{7}, "limit": 1}})
	if _, hint := c.untilEOSE("live"); hint != eoseMore {
		t.Fatalf("EOSE hint %q, want more", hint)
	}
	fresh := s.event(t, 7, "live", nil, 0)
	pub.publish(fresh)
	if msg := c.read(); label(msg) != "EVENT" || str(msg[1]) != "live" || decodeEvent(t, msg[2]).ID != fresh.ID {
		t.Fatalf("got %s, want the live event after a cut REQ", joinRaw(msg))
	}
}

// The stored query reads at most storedPageBytes of events at a time and
// asks again until the last created_at: the hint and the events must not
// depend on where those pages end.
func TestEOSEHintsAcrossStoredPages(t *testing.T) {
	st := newTestStore(t)
	r := startRelay(t, Config{}, st) // MaxLimit 500
	s := newSigner(t)
	// Each event counts exactly 32 KiB in eventSize (256 + content, no
	// tags): a page holds 32 of them (1 MiB), the 33rd starts the next.
	const size = 32 << 10
	content := func(i int) string {
		p := fmt.Sprintf("%04d", i)
		return p + strings.Repeat("x", size-256-len(p))
	}
	save := func(kind int, at nostr.Timestamp, i int) *nostr.Event {
		ev := s.event(t, kind, content(i), nil, at)
		if eventSize(ev) != size {
			t.Fatalf("eventSize %d, want %d", eventSize(ev), size)
		}
		if _, err := st.Save(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	at := nostr.Now() - 100
	// kind 1: 80 events at one second (three pages: 32, 32, 16).
	// kind 1002: exactly one page's worth, 32, at one second.
	// kind 1003: 20 at one second and 40 at the second before, so a page ends
	// inside the older second.
	var k1, k2, k3 []*nostr.Event
	for i := range 80 {
		k1 = append(k1, save(1, at, i))
	}
	for i := range 32 {
		k2 = append(k2, save(1002, at, i))
	}
	for i := range 60 {
		when := at
		if i >= 20 {
			when = at - 1
		}
		k3 = append(k3, save(1003, when, i))
	}
	n1, n2, n3 := newestFirst(k1), newestFirst(k2), newestFirst(k3)

	tests := []struct {
		name   string
		filter string
		want   []string
		hint   string
	}{
		{"three pages, no limit", `{"kinds":[1]}`, n1, eoseFinish},
		{"three pages, limit = matches", `{"kinds":[1],"limit":80}`, n1, eoseFinish},
		{"three pages, limit one short", `{"kinds":[1],"limit":79}`, n1[:79], eoseMore},
		{"limit inside the second page", `{"kinds":[1],"limit":40}`, n1[:40], eoseMore},
		{"limit at the end of the first page", `{"kinds":[1],"limit":32}`, n1[:32], eoseMore},
		{"limit at the end of the second page", `{"kinds":[1],"limit":64}`, n1[:64], eoseMore},
		{"one full page, no limit", `{"kinds":[1002]}`, n2, eoseFinish},
		{"one full page, limit = matches", `{"kinds":[1002],"limit":32}`, n2, eoseFinish},
		{"one full page, limit one short", `{"kinds":[1002],"limit":31}`, n2[:31], eoseMore},
		{"page ends inside an older second", `{"kinds":[1003]}`, n3, eoseFinish},
		{"page ends inside an older second, limit = matches", `{"kinds":[1003],"limit":60}`, n3, eoseFinish},
		{"page ends inside an older second, cut after it", `{"kinds":[1003],"limit":50}`, n3[:50], eoseMore},
		{"two filters across pages", `{"kinds":[1002]},{"kinds":[1],"limit":70}`, slices.Concat(n2, n1[:70]), eoseMore},
	}
	c := dial(t, r.url, nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			sub := "p" + strconv.Itoa(i)
			c.sendRaw([]byte(`["REQ","` + sub + `",` + tt.filter + `]`))
			msgs, hint := c.untilEOSE(sub)
			if got := storedIDs(t, msgs); !slices.Equal(got, tt.want) {
				t.Fatalf("sent %d events, want %d (in order, each once)", len(got), len(tt.want))
			}
			if hint != tt.hint {
				t.Fatalf("EOSE hint %q, want %q", hint, tt.hint)
			}
			c.send([]any{"CLOSE", sub})
		})
	}
}

// seqMsg is one EVENT of a since_seq read: the event id, its seq and the
// whole fourth element (compacted), which carries the flags.
type seqMsg struct {
	id   string
	seq  int64
	meta string
}

func seqMsgs(t *testing.T, msgs [][]json.RawMessage) []seqMsg {
	t.Helper()
	out := make([]seqMsg, len(msgs))
	for i, m := range msgs {
		if len(m) != 4 {
			t.Fatalf("EVENT %s, want four elements", joinRaw(m))
		}
		var meta struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal(m[3], &meta); err != nil || meta.Seq <= 0 {
			t.Fatalf("EVENT %s has no seq", joinRaw(m))
		}
		var b bytes.Buffer
		if err := json.Compact(&b, m[3]); err != nil {
			t.Fatal(err)
		}
		out[i] = seqMsg{id: decodeEvent(t, m[2]).ID, seq: meta.Seq, meta: b.String()}
	}
	return out
}

func seqsOf(items []seqMsg) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.seq
	}
	return out
}

func TestEOSEHintsOrderedRead(t *testing.T) {
	st := newTestStore(t)
	r := startRelay(t, Config{}, st)
	pub := dial(t, r.url, nil)
	h := strings.Repeat("3c", 32)
	evs := publishGroup(t, pub, h, 1, 6)
	// Large events saved directly: seq 7 to 46, 32 KiB each, so a read
	// from seq 6 crosses sendOrderedPage's 1 MiB reads.
	s := newSigner(t)
	for i := range 40 {
		ev := s.event(t, 445, groupContent(strings.Repeat("y", 24<<10)+strconv.Itoa(i)), nostr.Tags{{"h", h}}, 0)
		res, err := st.Save(context.Background(), ev)
		if err != nil || res.Seq != int64(7+i) {
			t.Fatalf("save: seq %d, %v; want seq %d", res.Seq, err, 7+i)
		}
		evs = append(evs, ev)
	}
	last := int64(len(evs))
	seqRange := func(from, to int64) []int64 {
		var out []int64
		for s := from; s <= to; s++ {
			out = append(out, s)
		}
		return out
	}
	tests := []struct {
		name   string
		cursor int64
		limit  int // -1: none
		want   []int64
		more   bool // EOSE ["more"] then CLOSED "more: after seq <last of want>"
	}{
		{"page cut by its limit", 0, 2, seqRange(1, 2), true},
		{"page cut at the last event but one", 0, int(last - 1), seqRange(1, last-1), true},
		{"limit 0 with events left", 3, 0, nil, true},
		{"page to the end, no limit", 0, -1, seqRange(1, last), false},
		{"page to the end, limit = what is left", 40, int(last - 40), seqRange(41, last), false},
		{"page to the end, limit above what is left", 40, 100, seqRange(41, last), false},
		{"across 1 MiB reads, cut", 6, 35, seqRange(7, 41), true},
		{"across 1 MiB reads, to the end", 6, -1, seqRange(7, last), false},
		{"cursor at the end", last, -1, nil, false},
		{"cursor past the end", last + 10, 5, nil, false},
	}
	c := dial(t, r.url, nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			sub := "o" + strconv.Itoa(i)
			f := map[string]any{"#h": []string{h}, "since_seq": tt.cursor}
			if tt.limit >= 0 {
				f["limit"] = tt.limit
			}
			c.send([]any{"REQ", sub, f})
			msgs, hint := c.untilEOSE(sub)
			got := seqMsgs(t, msgs)
			if !slices.Equal(seqsOf(got), tt.want) {
				t.Fatalf("seqs %v, want %v", seqsOf(got), tt.want)
			}
			for _, it := range got {
				if it.id != evs[it.seq-1].ID {
					t.Fatalf("seq %d is %s, want %s", it.seq, it.id, evs[it.seq-1].ID)
				}
			}
			if !tt.more {
				if hint != eoseFinish {
					t.Fatalf("EOSE hint %q, want finish", hint)
				}
				c.send([]any{"CLOSE", sub})
				return
			}
			if hint != eoseMore {
				t.Fatalf("EOSE hint %q, want more", hint)
			}
			at := tt.cursor
			if len(tt.want) > 0 {
				at = tt.want[len(tt.want)-1]
			}
			if msg := c.readClosed(sub); msg != "more: after seq "+strconv.FormatInt(at, 10) {
				t.Fatalf("CLOSED %q, want %q", msg, "more: after seq "+strconv.FormatInt(at, 10))
			}
		})
	}

	// A page that reaches the end goes live: EOSE ["finish"], then live
	// events with the next seqs. (The subscriptions above were closed.)
	c.t = t
	c.send([]any{"REQ", "live", map[string]any{"#h": []string{h}, "since_seq": last - 1, "limit": 1}})
	msgs, hint := c.untilEOSE("live")
	if got := seqMsgs(t, msgs); hint != eoseFinish || !slices.Equal(seqsOf(got), []int64{last}) {
		t.Fatalf("seqs %v hint %q, want [%d] finish", seqsOf(got), hint, last)
	}
	live := publishGroup(t, pub, h, int(last+1), 2)
	for i, ev := range live {
		if got := c.readSeqEvent("live"); got.seq != last+1+int64(i) || got.ev.ID != ev.ID {
			t.Fatalf("live: seq %d id %s, want seq %d id %s", got.seq, got.ev.ID, last+1+int64(i), ev.ID)
		}
	}
}

// fixedHandout is a ReqHandler that serves kind 443 REQs with a fixed
// list (or refuses them with err).
type fixedHandout struct {
	evs []*nostr.Event
	err error
}

func (h *fixedHandout) HandlesReq(filters nostr.Filters) bool {
	return len(filters) == 1 && slices.Equal(filters[0].Kinds, []int{443})
}

func (h *fixedHandout) ServeReq(context.Context, storage.Store, string, nostr.Filters) ([]*nostr.Event, error) {
	return h.evs, h.err
}

type testRefusal string

func (r testRefusal) Error() string     { return string(r) }
func (r testRefusal) OKMessage() string { return string(r) }

// A hand-out serves what it hands out, whatever the filter's limit and
// however many KeyPackages are stored: EOSE ["finish"].
func TestEOSEHintHandout(t *testing.T) {
	s := newSigner(t)
	served := s.event(t, 443, "served", nil, 0)
	h := &fixedHandout{evs: []*nostr.Event{served}}
	r := startRelay(t, Config{ReqHandler: h}, newTestStore(t))
	c := dial(t, r.url, nil)
	c.send([]any{"REQ", "kp", map[string]any{"kinds": []int{443}, "authors": []string{s.pk}, "limit": 1}})
	msgs, hint := c.untilEOSE("kp")
	if got := storedIDs(t, msgs); !slices.Equal(got, []string{served.ID}) || hint != eoseFinish {
		t.Fatalf("hand-out sent %v with hint %q, want [%s] finish", got, hint, served.ID)
	}
	h.err = testRefusal("rate-limited: slow down")
	c.send([]any{"REQ", "kp2", map[string]any{"kinds": []int{443}, "authors": []string{s.pk}}})
	if msg := c.readClosed("kp2"); msg != "rate-limited: slow down" {
		t.Fatalf("CLOSED %q", msg)
	}
	c.send([]any{"REQ", "sync", map[string]any{"kinds": []int{2}}})
	if _, hint := c.untilEOSE("sync"); hint != eoseFinish {
		t.Fatalf("hint %q", hint)
	}
}

// queryErrStore fails every Query and GroupLog.
type queryErrStore struct{ storage.Store }

var errQuery = errors.New("disk on fire")

func (queryErrStore) Query(context.Context, nostr.Filter) iter.Seq2[*nostr.Event, error] {
	return func(yield func(*nostr.Event, error) bool) { yield(nil, errQuery) }
}

func (queryErrStore) GroupLog(context.Context, string, int64, int) iter.Seq2[storage.Sequenced, error] {
	return func(yield func(storage.Sequenced, error) bool) { yield(storage.Sequenced{}, errQuery) }
}

// A refused REQ gets CLOSED and never an EOSE.
func TestReqRefusalsAreClosedNotEOSE(t *testing.T) {
	limits := testLimits()
	limits.MaxSubscriptions = 2
	limits.MaxFilters = 2
	limits.MaxFilterValues = 4
	h := strings.Repeat("4d", 32)
	tests := []struct {
		name   string
		store  func(t *testing.T) storage.Store
		open   []string // REQs opened (and left open) first
		req    string
		prefix string
	}{
		{"no filter", nil, nil, `["REQ","x"]`, "invalid:"},
		{"too many filters", nil, nil, `["REQ","x",{},{},{}]`, "invalid:"},
		{"filter not an object", nil, nil, `["REQ","x",[]]`, "invalid:"},
		{"negative limit", nil, nil, `["REQ","x",{"limit":-1}]`, "invalid:"},
		{"unindexed tag", nil, nil, `["REQ","x",{"#client":["a"]}]`, "invalid:"},
		{"too many filter values", nil, nil, `["REQ","x",{"kinds":[1,2,3,4,5]}]`, "invalid:"},
		{"since_seq with two filters", nil, nil, `["REQ","x",{"#h":["` + h + `"],"since_seq":0},{}]`, "invalid:"},
		{"since_seq without h", nil, nil, `["REQ","x",{"since_seq":0}]`, "invalid:"},
		{"too many subscriptions", nil, []string{"a", "b"}, `["REQ","x",{"kinds":[1]}]`, "rate-limited:"},
		{"gift wraps without AUTH", nil, nil, `["REQ","x",{"kinds":[1059]}]`, "auth-required:"},
		{"store failure", func(t *testing.T) storage.Store { return queryErrStore{newTestStore(t)} }, nil, `["REQ","x",{"kinds":[1]}]`, "error:"},
		{"store failure, since_seq", func(t *testing.T) storage.Store { return queryErrStore{newTestStore(t)} }, nil,
			`["REQ","x",{"#h":["` + h + `"],"since_seq":0}]`, "error:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st storage.Store
			if tt.store != nil {
				st = tt.store(t)
			} else {
				st = newTestStore(t)
			}
			r := startRelay(t, Config{Limits: limits}, st)
			c := dial(t, r.url, nil)
			for _, sub := range tt.open {
				c.send([]any{"REQ", sub, map[string]any{"kinds": []int{1}, "limit": 0}})
				if _, hint := c.untilEOSE(sub); hint != eoseFinish {
					t.Fatalf("%s: hint %q", sub, hint)
				}
			}
			c.sendRaw([]byte(tt.req))
			for {
				msg := c.read()
				switch {
				case label(msg) == "AUTH":
					continue // the challenge again, before auth-required:
				case label(msg) == "CLOSED" && str(msg[1]) == "x":
				default:
					t.Fatalf("got %s, want CLOSED %s", joinRaw(msg), tt.prefix)
				}
				if !strings.HasPrefix(str(msg[2]), tt.prefix) {
					t.Fatalf("CLOSED %q, want %s", str(msg[2]), tt.prefix)
				}
				break
			}
			// Nothing more for x: the next message is the answer to a
			// later request.
			c.send([]any{"COUNT", "sync", map[string]any{"kinds": []int{1}}})
			if msg := c.read(); str(msg[1]) != "sync" {
				t.Fatalf("got %s after the refusal, want the COUNT's answer", joinRaw(msg))
			}
		})
	}
}

// Overlapping since_seq re-reads return the same events with the same seq
// and flags: a released Commit is "released": true on every read, its
// replacement carries "releases", and a deleted event is a hole on every
// read.
func TestOrderedReReadsOverlap(t *testing.T) {
	eachBackend(t, func(t *testing.T, newStore func(testing.TB) storage.Store) {
		st := newStore(t)
		r := startRelay(t, Config{}, st)
		ctx := context.Background()
		pub := dial(t, r.url, nil)
		h := strings.Repeat("9a", 32)
		bySeq := map[int64]*nostr.Event{}
		add := func(first int, evs []*nostr.Event) {
			for i, ev := range evs {
				bySeq[int64(first+i)] = ev
			}
		}
		add(1, publishGroup(t, pub, h, 1, 3))
		// seq 4: a Commit holding a slot; seq 6: its replacement, through
		// a release claim (the store's ClaimSlot, as the slot hook calls it).
		slot := newSigner(t).pk
		held := newSigner(t).event(t, 445, groupContent("held"), nostr.Tags{{"h", h}}, 0)
		if res, err := st.ClaimSlot(ctx, storage.SlotClaim{H: h, Slot: slot, Commit: held}); err != nil || res.Seq != 4 {
			t.Fatalf("claim: %+v, %v; want seq 4", res, err)
		}
		bySeq[4] = held
		add(5, publishGroup(t, pub, h, 5, 1))
		repl := newSigner(t).event(t, 445, groupContent("replacement"), nostr.Tags{{"h", h}}, 0)
		res, err := st.ClaimSlot(ctx, storage.SlotClaim{H: h, Slot: slot, Commit: repl, Release: held.ID})
		if err != nil || res.Seq != 6 || res.Released != held.ID {
			t.Fatalf("release claim: %+v, %v; want seq 6 releasing %s", res, err, held.ID)
		}
		bySeq[6] = repl
		add(7, publishGroup(t, pub, h, 7, 1))
		// seq 8 is deleted by its author (a hole), then 9 and 10.
		author := newSigner(t)
		gone := author.event(t, 445, groupContent("gone"), nostr.Tags{{"h", h}}, 0)
		if got := pub.publish(gone); !got.ok || got.msg != "seq:8" {
			t.Fatalf("publish: %+v, want seq:8", got)
		}
		if got := pub.publish(author.event(t, 5, "", nostr.Tags{{"e", gone.ID}}, 0)); !got.ok {
			t.Fatalf("deletion: %+v", got)
		}
		add(9, publishGroup(t, pub, h, 9, 2))
		wantSeqs := []int64{1, 2, 3, 4, 5, 6, 7, 9, 10}
		wantMeta := func(seq int64) string {
			switch seq {
			case 4:
				return `{"seq":4,"released":true}`
			case 6:
				return `{"seq":6,"releases":{"id":"` + held.ID + `","seq":4}}`
			}
			return `{"seq":` + strconv.FormatInt(seq, 10) + `}`
		}

		c := dial(t, r.url, nil)
		reads := []struct {
			cursor int64
			limit  int // -1: none
			want   []int64
			next   int64 // the CLOSED's cursor; 0: EOSE ["finish"]
		}{
			{0, 5, []int64{1, 2, 3, 4, 5}, 5},
			{3, 5, []int64{4, 5, 6, 7, 9}, 9},
			{0, -1, wantSeqs, 0},
			{5, 2, []int64{6, 7}, 7},
			{7, 1, []int64{9}, 9},
			{4, -1, []int64{5, 6, 7, 9, 10}, 0},
			{8, -1, []int64{9, 10}, 0},
			{0, 9, wantSeqs, 0},
			{3, 1, []int64{4}, 4},
			{2, 3, []int64{3, 4, 5}, 5},
		}
		first := map[string]seqMsg{} // by event id, as first seen
		for i, rd := range reads {
			sub := "r" + strconv.Itoa(i)
			f := map[string]any{"#h": []string{h}, "since_seq": rd.cursor}
			if rd.limit >= 0 {
				f["limit"] = rd.limit
			}
			c.send([]any{"REQ", sub, f})
			msgs, hint := c.untilEOSE(sub)
			got := seqMsgs(t, msgs)
			if !slices.Equal(seqsOf(got), rd.want) {
				t.Fatalf("read %d (since_seq %d, limit %d): seqs %v, want %v", i, rd.cursor, rd.limit, seqsOf(got), rd.want)
			}
			for _, it := range got {
				if it.id != bySeq[it.seq].ID || it.meta != wantMeta(it.seq) {
					t.Fatalf("read %d: seq %d is %s %s, want %s %s", i, it.seq, it.id, it.meta, bySeq[it.seq].ID, wantMeta(it.seq))
				}
				if was, ok := first[it.id]; ok && was != it {
					t.Fatalf("read %d: %s re-read as %+v, first read as %+v", i, it.id, it, was)
				}
				first[it.id] = it
			}
			if rd.next == 0 {
				if hint != eoseFinish {
					t.Fatalf("read %d: hint %q, want finish", i, hint)
				}
				c.send([]any{"CLOSE", sub})
				continue
			}
			if hint != eoseMore {
				t.Fatalf("read %d: hint %q, want more", i, hint)
			}
			if msg := c.readClosed(sub); msg != "more: after seq "+strconv.FormatInt(rd.next, 10) {
				t.Fatalf("read %d: CLOSED %q, want more: after seq %d", i, msg, rd.next)
			}
		}
		if len(first) != len(wantSeqs) {
			t.Fatalf("saw %d events, want %d", len(first), len(wantSeqs))
		}

		// An event first seen live is re-read with the same seq and flags.
		c.send([]any{"REQ", "live", map[string]any{"#h": []string{h}, "since_seq": 10}})
		if msgs, hint := c.untilEOSE("live"); len(msgs) != 0 || hint != eoseFinish {
			t.Fatalf("read from the end: %d events, hint %q; want none, finish", len(msgs), hint)
		}
		ev := publishGroup(t, pub, h, 11, 1)[0]
		live := seqMsgs(t, [][]json.RawMessage{c.read()})[0]
		if live.id != ev.ID || live.meta != `{"seq":11}` {
			t.Fatalf("live: %+v, want %s with {\"seq\":11}", live, ev.ID)
		}
		c.send([]any{"REQ", "again", map[string]any{"#h": []string{h}, "since_seq": 9}})
		msgs, hint := c.untilEOSE("again")
		if got := seqMsgs(t, msgs); len(got) != 2 || got[0] != first[bySeq[10].ID] || got[1] != live || hint != eoseFinish {
			t.Fatalf("re-read %+v hint %q, want seq 10 as before and %+v, finish", got, hint, live)
		}
	})
}
