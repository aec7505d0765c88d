package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// The sequencing promise end to end (issue 5): real relays on loopback
// ports, several instances sharing PostgreSQL and Redis, raw websocket
// clients.

// newGroupID returns a random group id (h value).
func newGroupID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// groupEvent signs a kind 445 with a one-use key, as Marmot clients do.
func groupEvent(t testing.TB, h string) nostr.Event {
	t.Helper()
	body := make([]byte, 64)
	_, _ = rand.Read(body)
	return newAuthor(t).sign(t, 445, base64.StdEncoding.EncodeToString(body), nostr.Tags{{"h", h}}, 0)
}

// claim wraps commit in a kind 20445 claim signed by the slot key; release
// names a holder to release ("" for a plain claim).
func claim(t testing.TB, slot author, commit nostr.Event, release string) nostr.Event {
	t.Helper()
	body, err := json.Marshal(commit)
	if err != nil {
		t.Fatal(err)
	}
	tags := nostr.Tags{{"h", commit.Tags.GetFirst([]string{"h", ""}).Value()}}
	if release != "" {
		tags = append(tags, nostr.Tag{"release", release})
	}
	return slot.sign(t, 20445, string(body), tags, 0)
}

// instance is one relay of a cluster.
type instance struct {
	ws string
}

// startCluster starts n in-process relays sharing one PostgreSQL database
// and one Redis, each with its own store, fan-out and bus, as separate
// processes would have.
func startCluster(t *testing.T, n int, redisURL string, args ...string) []instance {
	t.Helper()
	db := testsvc.Postgres(t).URL
	out := make([]instance, n)
	for i := range out {
		c, err := parseServeConfig(append([]string{"--listen", "127.0.0.1:0", "--database-url", db, "--redis-url", redisURL}, args...), env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = instance{ws: startInProcess(t, c)}
	}
	return out
}

func mustDial(t *testing.T, url string) *wsClient {
	t.Helper()
	c, err := dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// seqItem is one event of a since_seq subscription.
type seqItem struct {
	seq      int64
	id       string
	released bool
	releases string // the id in "releases", for a release's replacement
}

// orderedReader follows a since_seq subscription.
type orderedReader struct {
	t   *testing.T
	c   *wsClient
	sub string
}

// openOrdered sends a since_seq REQ for h from cursor after.
func openOrdered(t *testing.T, c *wsClient, sub, h string, after int64, limit int) *orderedReader {
	t.Helper()
	f := map[string]any{"#h": []string{h}, "since_seq": after}
	if limit > 0 {
		f["limit"] = limit
	}
	msg, _ := json.Marshal([]any{"REQ", sub, f})
	if err := c.c.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	return &orderedReader{t: t, c: c, sub: sub}
}

// next returns the subscription's next frame: an EVENT (with its seq), or
// "EOSE"/"CLOSED" with the reason.
func (r *orderedReader) next(deadline time.Time) (typ string, it seqItem, reason string, err error) {
	r.c.c.SetReadDeadline(deadline)
	for {
		_, data, err := r.c.c.ReadMessage()
		if err != nil {
			return "", it, "", err
		}
		var frame []json.RawMessage
		if json.Unmarshal(data, &frame) != nil || len(frame) < 2 {
			continue
		}
		var sub string
		json.Unmarshal(frame[0], &typ)
		json.Unmarshal(frame[1], &sub)
		if sub != r.sub {
			continue
		}
		switch typ {
		case "EVENT":
			var ev nostr.Event
			var meta struct {
				Seq      int64 `json:"seq"`
				Released bool  `json:"released"`
				Releases struct {
					ID string `json:"id"`
				} `json:"releases"`
			}
			if len(frame) != 4 || json.Unmarshal(frame[2], &ev) != nil || json.Unmarshal(frame[3], &meta) != nil || meta.Seq <= 0 {
				return "", it, "", fmt.Errorf("bad since_seq EVENT %s", data)
			}
			return typ, seqItem{seq: meta.Seq, id: ev.ID, released: meta.Released, releases: meta.Releases.ID}, "", nil
		case "CLOSED":
			if len(frame) > 2 {
				json.Unmarshal(frame[2], &reason)
			}
		}
		return typ, it, reason, nil
	}
}

// collect reads EVENTs until n have arrived (failing after timeout), then
// keeps reading for quiet to catch anything extra.
func (r *orderedReader) collect(n int, timeout, quiet time.Duration) []seqItem {
	r.t.Helper()
	out, err := r.gather(n, timeout, quiet)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// gather is collect for any goroutine: it returns what it read and an error.
func (r *orderedReader) gather(n int, timeout, quiet time.Duration) ([]seqItem, error) {
	var out []seqItem
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		typ, it, reason, err := r.next(deadline)
		if err != nil {
			return out, fmt.Errorf("%s: after %d of %d events: %w", r.sub, len(out), n, err)
		}
		switch typ {
		case "EVENT":
			out = append(out, it)
		case "CLOSED":
			return out, fmt.Errorf("%s closed: %s", r.sub, reason)
		}
	}
	for quiet > 0 {
		typ, it, _, err := r.next(time.Now().Add(quiet))
		if err != nil {
			break
		}
		if typ == "EVENT" {
			out = append(out, it)
		}
	}
	return out, nil
}

// expectEOSE reads up to the subscription's EOSE and returns the events
// before it.
func (r *orderedReader) expectEOSE() []seqItem {
	r.t.Helper()
	var out []seqItem
	for {
		typ, it, reason, err := r.next(time.Now().Add(testTimeout))
		if err != nil {
			r.t.Fatalf("%s: waiting for EOSE: %v", r.sub, err)
		}
		switch typ {
		case "EVENT":
			out = append(out, it)
		case "EOSE":
			return out
		case "CLOSED":
			r.t.Fatalf("%s closed before EOSE: %s", r.sub, reason)
		}
	}
}

// plainLive opens a plain (NIP-01) subscription to h for live events only.
func plainLive(t *testing.T, c *wsClient, sub, h string) {
	t.Helper()
	if _, err := c.subscribe(sub, nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}, LimitZero: true}, testTimeout); err != nil {
		t.Fatal(err)
	}
}

// collectPlain reads n live EVENT ids of sub (then quiet for extras).
func collectPlain(t *testing.T, c *wsClient, sub string, n int, timeout, quiet time.Duration) []string {
	t.Helper()
	out, err := gatherPlain(c, sub, n, timeout, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// gatherPlain is collectPlain for any goroutine.
func gatherPlain(c *wsClient, sub string, n int, timeout, quiet time.Duration) ([]string, error) {
	var out []string
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		typ, ev, reason, err := c.next(sub, deadline)
		if err != nil {
			return out, fmt.Errorf("%s: after %d of %d events: %w", sub, len(out), n, err)
		}
		if typ == "CLOSED" {
			return out, fmt.Errorf("%s closed: %s", sub, reason)
		}
		if typ == "EVENT" {
			out = append(out, ev.ID)
		}
	}
	for quiet > 0 {
		typ, ev, _, err := c.next(sub, time.Now().Add(quiet))
		if err != nil {
			break
		}
		if typ == "EVENT" {
			out = append(out, ev.ID)
		}
	}
	return out, nil
}

// assertSeqRun checks items are exactly seq from, from+1, ... in order.
func assertSeqRun(t *testing.T, who string, items []seqItem, from int64) {
	t.Helper()
	for i, it := range items {
		if it.seq != from+int64(i) {
			t.Fatalf("%s: item %d has seq %d, want %d", who, i, it.seq, from+int64(i))
		}
	}
}

func TestConcurrentCommittersGetOneSlotAcrossInstances(t *testing.T) {
	inst := startCluster(t, 2, testsvc.Redis(t))
	h := newGroupID()

	// Subscribers on both instances: one ordered, one plain, each.
	var ordered []*orderedReader
	var plain []*wsClient
	for i, in := range inst {
		r := openOrdered(t, mustDial(t, in.ws), "ord"+strconv.Itoa(i), h, 0, 0)
		if got := r.expectEOSE(); len(got) != 0 {
			t.Fatalf("empty group served %d events", len(got))
		}
		ordered = append(ordered, r)
		p := mustDial(t, in.ws)
		plainLive(t, p, "plain", h)
		plain = append(plain, p)
	}

	// 32 members of one epoch build competing Commits for the same slot
	// and claim it at once, half through each instance; 32 application
	// messages race with them.
	const n = 32
	slotKey := newAuthor(t)
	type answer struct {
		commit nostr.Event
		ok     bool
		msg    string
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		commit := groupEvent(t, h)
		cl := claim(t, slotKey, commit, "")
		app := groupEvent(t, h)
		committer := mustDial(t, inst[i%2].ws)
		sender := mustDial(t, inst[(i+1)%2].ws)
		answers[i].commit = commit
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			ok, msg, err := committer.publish(cl, testTimeout)
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
			}
			answers[i].ok, answers[i].msg = ok, msg
		}()
		go func() {
			defer wg.Done()
			<-start
			if ok, msg, err := sender.publish(app, testTimeout); err != nil || !ok || !strings.HasPrefix(msg, "seq:") {
				t.Errorf("application message %d: ok=%v %q %v", i, ok, msg, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var holder nostr.Event
	winners := 0
	for _, a := range answers {
		if a.ok {
			winners++
			holder = a.commit
			if !strings.HasPrefix(a.msg, "seq:") || strings.Contains(a.msg, " ") {
				t.Fatalf("winner's OK message %q, want seq:<n>", a.msg)
			}
		}
	}
	if winners != 1 {
		t.Fatalf("%d claims won the slot, want exactly 1", winners)
	}
	for i, a := range answers {
		if !a.ok && a.msg != "blocked: slot taken by "+holder.ID {
			t.Fatalf("loser %d told %q, want the holder %s", i, a.msg, holder.ID)
		}
	}
	// The holder's retry answers the same; a loser's bare Commit is
	// refused on either instance with the holder's id.
	var winMsg string
	for _, a := range answers {
		if a.ok {
			winMsg = a.msg
		}
	}
	for i, in := range inst {
		c := mustDial(t, in.ws)
		if ok, msg, err := c.publish(claim(t, slotKey, holder, ""), testTimeout); err != nil || !ok || msg != winMsg {
			t.Fatalf("instance %d: holder retry ok=%v %q %v, want OK %q", i, ok, msg, err, winMsg)
		}
		for j, a := range answers {
			if a.ok || j%2 == i {
				continue
			}
			if ok, msg, err := c.publish(a.commit, testTimeout); err != nil || ok || msg != "blocked: slot taken by "+holder.ID {
				t.Fatalf("instance %d: bare re-send of loser %d: ok=%v %q %v", i, j, ok, msg, err)
			}
			break
		}
	}

	// Every subscriber, on both instances, sees the same n+1 events in the
	// same order: the holder and the application messages, no loser.
	var first []seqItem
	for i, r := range ordered {
		got := r.collect(n+1, 30*time.Second, 300*time.Millisecond)
		if len(got) != n+1 {
			t.Fatalf("ordered subscriber %d got %d events, want %d", i, len(got), n+1)
		}
		assertSeqRun(t, r.sub, got, 1)
		if i == 0 {
			first = got
			continue
		}
		for k := range got {
			if got[k] != first[k] {
				t.Fatalf("instances disagree at position %d: %+v vs %+v", k, got[k], first[k])
			}
		}
	}
	for i, p := range plain {
		got := collectPlain(t, p, "plain", n+1, 30*time.Second, 300*time.Millisecond)
		if len(got) != n+1 {
			t.Fatalf("plain subscriber %d got %d events, want %d", i, len(got), n+1)
		}
		for k := range got {
			if got[k] != first[k].id {
				t.Fatalf("plain subscriber %d: position %d is %s, ordered readers have %s", i, k, got[k], first[k].id)
			}
		}
	}
	holderSeen := false
	for _, it := range first {
		holderSeen = holderSeen || it.id == holder.ID
		for _, a := range answers {
			if !a.ok && a.commit.ID == it.id {
				t.Fatalf("a losing Commit %s was delivered", it.id)
			}
		}
	}
	if !holderSeen {
		t.Fatal("the holder was not delivered")
	}
}

func TestSlotRelease(t *testing.T) {
	for _, backend := range liveBackends {
		t.Run(backend, func(t *testing.T) {
			r := startLive(t, backend)
			h := newGroupID()
			slotKey := newAuthor(t)
			holder := groupEvent(t, h)
			if ok, msg, err := r.client.publish(claim(t, slotKey, holder, ""), testTimeout); err != nil || !ok || msg != "seq:1" {
				t.Fatalf("first claim: ok=%v %q %v", ok, msg, err)
			}
			// A release naming a Commit that does not hold the slot is refused.
			stranger := groupEvent(t, h)
			wrong := groupEvent(t, h)
			if ok, msg, _ := r.client.publish(claim(t, slotKey, wrong, stranger.ID), testTimeout); ok || msg != "blocked: slot taken by "+holder.ID {
				t.Fatalf("release of a non-holder: ok=%v %q", ok, msg)
			}
			// Naming the holder: the replacement holds the slot at once.
			replacement := groupEvent(t, h)
			want := "seq:2 released:" + holder.ID
			if ok, msg, _ := r.client.publish(claim(t, slotKey, replacement, holder.ID), testTimeout); !ok || msg != want {
				t.Fatalf("release: ok=%v %q, want %q", ok, msg, want)
			}
			// Its retry answers the same; a third claim loses to the replacement.
			if ok, msg, _ := r.client.publish(claim(t, slotKey, replacement, holder.ID), testTimeout); !ok || msg != want {
				t.Fatalf("release retry: ok=%v %q, want %q", ok, msg, want)
			}
			late := groupEvent(t, h)
			if ok, msg, _ := r.client.publish(claim(t, slotKey, late, ""), testTimeout); ok || msg != "blocked: slot taken by "+replacement.ID {
				t.Fatalf("claim after the release: ok=%v %q", ok, msg)
			}
			if ok, msg, _ := r.client.publish(claim(t, slotKey, late, holder.ID), testTimeout); ok || msg != "blocked: slot taken by "+replacement.ID {
				t.Fatalf("second release of the old holder: ok=%v %q", ok, msg)
			}
			// The released Commit stays in the log, flagged; the claim itself
			// was never stored.
			rd := openOrdered(t, mustDial(t, r.ws), "log", h, 0, 0)
			got := rd.expectEOSE()
			wantLog := []seqItem{{1, holder.ID, true, ""}, {2, replacement.ID, false, holder.ID}}
			if len(got) != 2 || got[0] != wantLog[0] || got[1] != wantLog[1] {
				t.Fatalf("log %+v, want %+v", got, wantLog)
			}
			if evs, err := r.client.query(nostr.Filter{Kinds: []int{20445}}, testTimeout); err != nil || len(evs) != 0 {
				t.Fatalf("claims stored: %d %v", len(evs), err)
			}
		})
	}
}

func TestPipelinedEventsArriveInOrderOnBothInstances(t *testing.T) {
	const n = 10000
	inst := startCluster(t, 2, testsvc.Redis(t), "--event-burst", "20000", "--conn-event-burst", "20000")
	h := newGroupID()
	// Signed first: under -race on a busy machine signing takes longer
	// than a subscriber may stay silent (--pong-timeout), and the
	// subscribers below read only once the events stream.
	events := make([]nostr.Event, n)
	for i := range events {
		events[i] = groupEvent(t, h)
	}
	var ordered []*orderedReader
	var plain []*wsClient
	for i, in := range inst {
		r := openOrdered(t, mustDial(t, in.ws), "ord"+strconv.Itoa(i), h, 0, 0)
		r.expectEOSE()
		ordered = append(ordered, r)
		p := mustDial(t, in.ws)
		plainLive(t, p, "plain", h)
		plain = append(plain, p)
	}
	// Subscribers read while the events stream in (a reader that stops
	// reading is disconnected once its queue is full, by design).
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range inst {
		wg.Add(2)
		go func() {
			defer wg.Done()
			got, err := ordered[i].gather(n, 5*time.Minute, 0)
			if err != nil {
				errs <- fmt.Errorf("instance %d: %w", i, err)
				return
			}
			for k, it := range got {
				if it.seq != int64(k+1) || it.id != events[k].ID {
					errs <- fmt.Errorf("instance %d ordered: position %d has seq %d, want %d", i, k, it.seq, k+1)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			got, err := gatherPlain(plain[i], "plain", n, 5*time.Minute, 0)
			if err != nil {
				errs <- fmt.Errorf("instance %d: %w", i, err)
				return
			}
			for k, id := range got {
				if id != events[k].ID {
					errs <- fmt.Errorf("instance %d plain: position %d out of order", i, k)
					return
				}
			}
		}()
	}

	pub := mustDial(t, inst[0].ws)
	writeErr := make(chan error, 1)
	go func() {
		for _, ev := range events {
			b, _ := json.Marshal([]any{"EVENT", ev})
			if err := pub.c.WriteMessage(websocket.TextMessage, b); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	// Every OK arrives in order with the next seq.
	deadline := time.Now().Add(5 * time.Minute)
	for i, ev := range events {
		id, ok, msg, err := pub.nextOK(deadline)
		if err != nil || id != ev.ID || !ok || msg != "seq:"+strconv.Itoa(i+1) {
			t.Fatalf("answer %d = %s %v %q %v, want OK true seq:%d", i, id, ok, msg, err, i+1)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSinceSeqReconnectMissesNothing(t *testing.T) {
	inst := startCluster(t, 2, testsvc.Redis(t))
	h := newGroupID()
	const n = 1500
	pub := mustDial(t, inst[0].ws)
	done := make(chan error, 1)
	go func() {
		for i := range n {
			ev := groupEvent(t, h)
			ok, msg, err := pub.publish(ev, testTimeout)
			if err != nil || !ok || msg != "seq:"+strconv.Itoa(i+1) {
				done <- fmt.Errorf("publish %d: ok=%v %q %v", i, ok, msg, err)
				return
			}
		}
		done <- nil
	}()

	// A reader on the other instance reads small pages and live events,
	// drops its connection every ~200 events, and resumes from the last
	// seq it saw; pages cut short make it resume too.
	var got []seqItem
	after := int64(0)
	for round := 0; int64(len(got)) < n && round < 200; round++ {
		c, err := dial(context.Background(), inst[1].ws)
		if err != nil {
			t.Fatal(err)
		}
		r := openOrdered(t, c, "s", h, after, 50)
		deadline := time.Now().Add(30 * time.Second)
		for taken := 0; taken < 200 && int64(len(got)) < n; {
			typ, it, reason, err := r.next(deadline)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if typ == "CLOSED" {
				if reason != "more: after seq "+strconv.FormatInt(after, 10) {
					t.Fatalf("CLOSED %q with the last seq seen %d", reason, after)
				}
				break
			}
			if typ == "EVENT" {
				got = append(got, it)
				after = it.seq
				taken++
			}
		}
		c.Close()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("reader got %d events, want %d", len(got), n)
	}
	assertSeqRun(t, "reader", got, 1)
}

func TestRedisOutageDelaysCrossInstanceDeliveryOnly(t *testing.T) {
	rs := testsvc.RedisServer(t)
	inst := startCluster(t, 2, rs.URL())
	h := newGroupID()
	r := openOrdered(t, mustDial(t, inst[1].ws), "s", h, 0, 0)
	r.expectEOSE()
	pub := mustDial(t, inst[0].ws)
	publish := func(seq int) {
		t.Helper()
		if ok, msg, err := pub.publish(groupEvent(t, h), testTimeout); err != nil || !ok || msg != "seq:"+strconv.Itoa(seq) {
			t.Fatalf("publish seq %d: ok=%v %q %v", seq, ok, msg, err)
		}
	}
	publish(1)
	assertSeqRun(t, "before the outage", r.collect(1, testTimeout, 0), 1)

	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	// Storage and sequencing go on without Redis.
	for seq := 2; seq <= 4; seq++ {
		publish(seq)
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	// Once the bus is back, the other instance's subscriber catches up in
	// order, with what was published during the outage.
	got := r.collect(3, 30*time.Second, 0)
	assertSeqRun(t, "after the outage", got, 2)
	publish(5)
	assertSeqRun(t, "after recovery", r.collect(1, 30*time.Second, 200*time.Millisecond), 5)
}

func TestGroupFloodGuard(t *testing.T) {
	t.Run("defaults let a busy client pipeline 1,000 events to one group", func(t *testing.T) {
		r := startLive(t, "sqlite")
		h := newGroupID()
		events := make([]nostr.Event, 1000)
		for i := range events {
			events[i] = groupEvent(t, h)
		}
		for i, ev := range events {
			b, _ := json.Marshal([]any{"EVENT", ev})
			if err := r.client.c.WriteMessage(websocket.TextMessage, b); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		deadline := time.Now().Add(time.Minute)
		for i, ev := range events {
			id, ok, msg, err := r.client.nextOK(deadline)
			if err != nil || id != ev.ID || !ok || msg != "seq:"+strconv.Itoa(i+1) {
				t.Fatalf("event %d answered %s %v %q %v", i, id, ok, msg, err)
			}
		}
	})
	t.Run("the per-group backstop is shared by instances and spares claims", func(t *testing.T) {
		inst := startCluster(t, 2, testsvc.Redis(t), "--group-burst", "4", "--group-rate", "0.01")
		h := newGroupID()
		a, b := mustDial(t, inst[0].ws), mustDial(t, inst[1].ws)
		for i := range 4 {
			c := []*wsClient{a, b}[i%2]
			if ok, msg, _ := c.publish(groupEvent(t, h), testTimeout); !ok {
				t.Fatalf("event %d refused: %q", i, msg)
			}
		}
		if ok, msg, _ := b.publish(groupEvent(t, h), testTimeout); ok || !strings.HasPrefix(msg, "rate-limited:") {
			t.Fatalf("fifth event: ok=%v %q, want rate-limited", ok, msg)
		}
		if ok, msg, _ := a.publish(groupEvent(t, newGroupID()), testTimeout); !ok {
			t.Fatalf("another group was limited: %q", msg)
		}
		if ok, msg, _ := a.publish(claim(t, newAuthor(t), groupEvent(t, h), ""), testTimeout); !ok || msg != "seq:5" {
			t.Fatalf("a Commit claim was limited: ok=%v %q", ok, msg)
		}
	})
}

func TestSequencingNIP11(t *testing.T) {
	r := startLive(t, "sqlite")
	var doc map[string]any
	fetchNIP11(t, r.http, &doc)
	exts, _ := doc["burrow_extensions"].([]any)
	if len(exts) != 2 || exts[0] != "since_seq/1" || exts[1] != "commit_slots/1" {
		t.Fatalf("burrow_extensions = %v", doc["burrow_extensions"])
	}
	ge, _ := doc["group_events"].(map[string]any)
	if ge["max_content_length"] != float64(256<<10) || ge["retention_seconds"] != float64(90*24*3600) || ge["auth_required"] != false {
		t.Fatalf("group_events = %v", ge)
	}
}

// nextOK reads frames up to the next OK and returns its fields.
func (w *wsClient) nextOK(deadline time.Time) (id string, ok bool, msg string, err error) {
	w.c.SetReadDeadline(deadline)
	for {
		_, data, err := w.c.ReadMessage()
		if err != nil {
			return "", false, "", err
		}
		var frame []json.RawMessage
		var typ string
		if json.Unmarshal(data, &frame) != nil || len(frame) != 4 || json.Unmarshal(frame[0], &typ) != nil || typ != "OK" {
			continue
		}
		json.Unmarshal(frame[1], &id)
		json.Unmarshal(frame[2], &ok)
		json.Unmarshal(frame[3], &msg)
		return id, ok, msg, nil
	}
}

// fetchNIP11 decodes the relay's NIP-11 document into doc.
func fetchNIP11(t *testing.T, httpURL string, doc any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, httpURL, nil)
	req.Header.Set("Accept", "application/nostr+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(doc); err != nil {
		t.Fatal(err)
	}
}

// readLog reads group h's whole log from url with since_seq pages.
func readLog(t *testing.T, url, h string) []seqItem {
	t.Helper()
	c := mustDial(t, url)
	var out []seqItem
	after := int64(0)
	for page := 0; ; page++ {
		r := openOrdered(t, c, "log"+strconv.Itoa(page), h, after, 500)
		items := r.expectEOSE()
		out = append(out, items...)
		if len(items) > 0 {
			after = items[len(items)-1].seq
		}
		typ, _, reason, err := r.next(time.Now().Add(200 * time.Millisecond))
		if err != nil || typ != "CLOSED" {
			return out // live: the log is read
		}
		if !strings.HasPrefix(reason, "more: ") {
			t.Fatalf("CLOSED %q", reason)
		}
	}
}

func TestInstanceKilledMidStream(t *testing.T) {
	bin := buildRelay(t)
	args := []string{"--database-url", testsvc.Postgres(t).URL, "--redis-url", testsvc.Redis(t)}
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := startProcess(t, bin, addrA, args...)
	startProcess(t, bin, addrB, args...)
	h := newGroupID()

	// A live ordered reader on the instance that survives.
	watchConn := mustDial(t, "ws://"+addrB)
	watcher := openOrdered(t, watchConn, "watch", h, 0, 0)
	watcher.expectEOSE()
	var watchMu sync.Mutex
	var watched []seqItem
	watchDone := make(chan string, 1)
	go func() {
		for {
			// Ends when the test closes the connection.
			typ, it, reason, err := watcher.next(time.Now().Add(5 * time.Minute))
			switch {
			case err != nil:
				watchDone <- ""
				return
			case typ == "CLOSED":
				watchDone <- reason
				return
			case typ == "EVENT":
				watchMu.Lock()
				watched = append(watched, it)
				watchMu.Unlock()
			}
		}
	}()
	watchedCount := func() int { watchMu.Lock(); defer watchMu.Unlock(); return len(watched) }

	// Publishers on both instances; each acknowledged event records its seq.
	var acked sync.Map // id -> seq
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 6 {
		addr := addrA
		if i >= 4 {
			addr = addrB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial(ctx, "ws://"+addr)
			if err != nil {
				return
			}
			defer c.Close()
			for ctx.Err() == nil {
				ev := groupEvent(t, h)
				ok, msg, err := c.publish(ev, 10*time.Second)
				if err != nil {
					return // the instance died
				}
				if seq, perr := strconv.ParseInt(strings.TrimPrefix(msg, "seq:"), 10, 64); ok && perr == nil {
					acked.Store(ev.ID, seq)
				}
			}
		}()
	}
	waitForAcks(t, &acked, 300)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	waitForAcks(t, &acked, countMap(&acked)+100) // B goes on alone
	cancel()
	wg.Wait()
	startProcess(t, bin, addrA, args...)

	// After the restart both instances serve one log: seqs strictly
	// increasing, each acknowledged event present with the seq it was told.
	want := map[string]int64{}
	acked.Range(func(k, v any) bool { want[k.(string)] = v.(int64); return true })
	var logs [][]seqItem
	for _, url := range []string{"ws://" + addrA, "ws://" + addrB} {
		log := readLog(t, url, h)
		seen := map[string]int64{}
		for i, it := range log {
			if i > 0 && it.seq <= log[i-1].seq {
				t.Fatalf("%s: seq %d follows %d", url, it.seq, log[i-1].seq)
			}
			seen[it.id] = it.seq
		}
		for id, seq := range want {
			if got, ok := seen[id]; !ok || got != seq {
				t.Fatalf("%s: acknowledged event %s (seq %d) stored as seq %d (present %v)", url, id, seq, got, ok)
			}
		}
		logs = append(logs, log)
	}
	if len(logs[0]) != len(logs[1]) {
		t.Fatalf("instances serve %d and %d events", len(logs[0]), len(logs[1]))
	}
	// The surviving instance's live reader saw the log in order, each once.
	waitUntil(t, "the watcher catches up", func() bool { return watchedCount() >= len(logs[1]) })
	time.Sleep(300 * time.Millisecond) // anything extra would arrive now
	watchConn.Close()
	if reason := <-watchDone; reason != "" {
		t.Fatalf("watcher closed: %s", reason)
	}
	assertSeqRun(t, "watcher", watched, 1)
	if len(watched) != len(logs[1]) {
		t.Fatalf("watcher got %d events, the log has %d", len(watched), len(logs[1]))
	}
	t.Logf("%d events acknowledged, %d stored, instance killed mid-stream", len(want), len(logs[1]))
}

func countMap(m *sync.Map) int {
	n := 0
	m.Range(func(_, _ any) bool { n++; return true })
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
