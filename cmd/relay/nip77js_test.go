package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// nip77Dir holds the NIP-77 peer: nostr-tools' nip77 (pinned in its
// package.json), an implementation of negentropy independent of the
// relay's (go-nostr's), run by node.
const nip77Dir = "../../interop/nip77js"

// nip77Item is one event a reconciling client holds.
type nip77Item struct {
	ID        string `json:"id"`
	CreatedAt int64  `json:"created_at"`
}

// nip77Result is what interop/nip77js/sync.mjs prints.
type nip77Result struct {
	Have     []string `json:"have"`
	Need     []string `json:"need"`
	Rounds   int      `json:"rounds"`
	Sent     []int    `json:"sent"`
	Received []int    `json:"received"`
	Error    string   `json:"error"`
}

// TestNIP77WithNostrTools reconciles, over NIP-77, sets held by nostr-tools'
// negentropy (the client, in node: its NegentropySync over its Relay) with
// the relay's (go-nostr's negentropy over the SQLite store), and checks that
// the ids nostr-tools reports as have (client only) and need (relay only)
// are exactly the set differences. The relay holds 3,200 kind 445 events of
// one group, four a second (so range bounds need id prefixes), and noise
// the filter leaves out (another group's kind 445, kind 1 notes tagged with
// the group): enough for ranges to split twice and for messages to reach
// both sides' frame limits (the relay's 96 KiB, nostr-tools' 60,000
// bytes), so reconciliations take several rounds. A filter past
// --neg-max-ids reaches nostr-tools as NEG-ERR blocked.
func TestNIP77WithNostrTools(t *testing.T) {
	node := nodeWithPackages(t, nip77Dir)
	const n = 3200
	r := startLive(t, "sqlite", "--negentropy", "--neg-max-ids", "3300",
		"--event-burst", "20000", "--conn-event-burst", "20000",
		"--sqlite-synchronous", "normal") // durability is not what this is about

	h, other := newGroupID(), newGroupID()
	base := int64(nostr.Now()) - 24*3600
	span := int64(n / 4) // seconds the group's events cover
	group := make([]nostr.Event, n)
	for i := range group {
		group[i] = nostr.Event{Kind: 445, Tags: nostr.Tags{{"h", h}}, CreatedAt: nostr.Timestamp(base + int64(i/4))}
	}
	var noise []nostr.Event
	for i := 0; i < 150; i++ {
		noise = append(noise, nostr.Event{Kind: 445, Tags: nostr.Tags{{"h", other}}, CreatedAt: nostr.Timestamp(base + int64(i*5))})
	}
	for i := 0; i < 30; i++ {
		noise = append(noise, nostr.Event{Kind: 1, Tags: nostr.Tags{{"h", h}}, CreatedAt: nostr.Timestamp(base + int64(i*25))})
	}
	signStart := time.Now()
	signAll(t, group)
	signAll(t, noise)
	t.Logf("signed %d events in %v", n+len(noise), time.Since(signStart))
	start := time.Now()
	publishPipelined(t, r.ws, append(slices.Clone(group), noise...))
	t.Logf("published %d events in %v", n+len(noise), time.Since(start))

	items := func(evs []nostr.Event) []nip77Item {
		out := make([]nip77Item, len(evs))
		for i, ev := range evs {
			out[i] = nip77Item{ev.ID, int64(ev.CreatedAt)}
		}
		return out
	}
	ids := func(its []nip77Item) []string {
		out := make([]string, len(its))
		for i, it := range its {
			out[i] = it.ID
		}
		return out
	}
	// Events only the client holds: random ids at random seconds of
	// [lo, hi) (many sharing a second with relay events), the first two at
	// its ends.
	rng := mrand.New(mrand.NewPCG(1, 2))
	fabricated := func(k int, lo, hi int64) []nip77Item {
		out := make([]nip77Item, k)
		for i := range out {
			id := make([]byte, 32)
			_, _ = rand.Read(id)
			ts := lo + rng.Int64N(hi-lo)
			switch i {
			case 0:
				ts = lo
			case 1:
				ts = hi - 1
			}
			out[i] = nip77Item{hex.EncodeToString(id), ts}
		}
		return out
	}
	all := items(group)
	inGroup := nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {h}}}
	empty := nostr.Filter{Kinds: []int{445}, Tags: nostr.TagMap{"h": {newGroupID()}}}

	type scenario struct {
		name       string
		filter     nostr.Filter
		local      []nip77Item
		have, need []string
		minRounds  int
		maxRounds  int // 0: no bound
		// clientCut and relayCut: a message of that side reached its
		// frame limit (so the rest of the range went on in a later round).
		clientCut, relayCut bool
		wantErr             string // a prefix of the script's error
	}
	var scenarios []scenario
	{
		// Differs both ways all along the span: every 7th event and a run
		// of 300 missing; 400 of its own, 50 of the other group and 20
		// notes held (outside the filter, so the relay lacks them too).
		var local []nip77Item
		var need []string
		for i, it := range all {
			if i%7 == 3 || i >= 1000 && i < 1300 {
				need = append(need, it.ID)
				continue
			}
			local = append(local, it)
		}
		own := append(fabricated(400, base-1000, base+span+1000), items(noise[:50])...)
		own = append(own, items(noise[150:170])...)
		scenarios = append(scenarios, scenario{name: "differs both ways", filter: inGroup,
			local: append(local, own...), have: ids(own), need: need, minRounds: 3, clientCut: true})
	}
	{
		// A window (since, until) of the span: the relay reconciles only
		// what the filter matches, events i in [800, 2400).
		w := inGroup
		since, until := nostr.Timestamp(base+200), nostr.Timestamp(base+599)
		w.Since, w.Until = &since, &until
		var local []nip77Item
		var need []string
		for _, it := range all[800:2400] {
			if rng.IntN(5) == 0 {
				need = append(need, it.ID)
			} else {
				local = append(local, it)
			}
		}
		own := fabricated(100, base+200, base+600)
		scenarios = append(scenarios, scenario{name: "since and until", filter: w,
			local: append(local, own...), have: ids(own), need: need, minRounds: 2})
	}
	disjoint := fabricated(1000, base, base+span)
	onlyClient := fabricated(500, base, base+span)
	scenarios = append(scenarios,
		scenario{name: "client holds nothing", filter: inGroup, need: ids(all), minRounds: 2, relayCut: true},
		scenario{name: "same set", filter: inGroup, local: all, minRounds: 1, maxRounds: 1},
		scenario{name: "disjoint sets", filter: inGroup, local: disjoint, have: ids(disjoint), need: ids(all), minRounds: 2, relayCut: true},
		scenario{name: "relay holds none", filter: empty, local: onlyClient, have: ids(onlyClient), minRounds: 1, maxRounds: 1},
		scenario{name: "both empty", filter: empty, minRounds: 1, maxRounds: 1},
		scenario{name: "filter past --neg-max-ids", filter: nostr.Filter{Kinds: []int{445}}, local: all,
			wantErr: "NEG-ERR: blocked: "},
	)

	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			res := runNIP77Sync(t, node, r.ws, sc.filter, sc.local)
			if sc.wantErr != "" {
				if !strings.HasPrefix(res.Error, sc.wantErr) {
					t.Fatalf("sync.mjs: %q (have %d, need %d), want an error %q...", res.Error, len(res.Have), len(res.Need), sc.wantErr)
				}
				return
			}
			if res.Error != "" {
				t.Fatalf("sync.mjs: %s", res.Error)
			}
			t.Logf("%d rounds in %v; message bytes sent %v, received %v", res.Rounds, time.Since(start), res.Sent, res.Received)
			checkIDSet(t, "have", res.Have, sc.have)
			checkIDSet(t, "need", res.Need, sc.need)
			if res.Rounds < sc.minRounds || sc.maxRounds > 0 && res.Rounds > sc.maxRounds {
				t.Errorf("%d rounds, want %d to %d", res.Rounds, sc.minRounds, sc.maxRounds)
			}
			if len(res.Received) == 0 || len(res.Sent) == 0 {
				t.Fatalf("messages sent %v, received %v", res.Sent, res.Received)
			}
			// server/negentropy.go's negFrameLimit.
			if m := slices.Max(res.Received); m > 96<<10 {
				t.Errorf("the relay sent a %d-byte message, past its 96 KiB frame limit", m)
			}
			if m := slices.Max(res.Received); sc.relayCut && m < 90_000 {
				t.Errorf("the relay's largest message has %d bytes: its frame limit was not reached, the cut is not covered", m)
			}
			if m := slices.Max(res.Sent); sc.clientCut && m < 50_000 {
				t.Errorf("nostr-tools' largest message has %d bytes: its frame limit was not reached, the cut is not covered", m)
			}
		})
	}
}

// runNIP77Sync runs interop/nip77js/sync.mjs against url for filter with
// the client holding local. A failure of the reconciliation is in the
// result's Error; one of the script itself fails the test.
func runNIP77Sync(t *testing.T, node, url string, filter nostr.Filter, local []nip77Item) nip77Result {
	t.Helper()
	if local == nil {
		local = []nip77Item{}
	}
	job, err := json.Marshal(map[string]any{"filter": filter, "items": local})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "sync.mjs", url)
	cmd.Dir = nip77Dir
	cmd.Stdin = bytes.NewReader(job)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var res nip77Result
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		t.Fatalf("sync.mjs: %v; printed %d bytes, not one JSON line (%v): %.300q; stderr: %s", runErr, len(out), err, out, stderr.String())
	}
	if (runErr != nil) != (res.Error != "") {
		t.Fatalf("sync.mjs: exit %v with error %q; stderr: %s", runErr, res.Error, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("sync.mjs stderr: %s", s)
	}
	return res
}

// signAll gives each of evs random content and signs it with one of a few
// keys, on every core: go-nostr's Event.Sign derives the public key
// anew each time, which under -race costs as much as the signature.
func signAll(t *testing.T, evs []nostr.Event) {
	t.Helper()
	type key struct {
		sk *btcec.PrivateKey
		pk string
	}
	keys := make([]key, 8)
	for i := range keys {
		sk, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = key{sk, hex.EncodeToString(schnorr.SerializePubKey(sk.PubKey()))}
	}
	workers := runtime.GOMAXPROCS(0)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < len(evs); i += workers {
				k := keys[i%len(keys)]
				ev := &evs[i]
				body := make([]byte, 48)
				_, _ = rand.Read(body)
				ev.Content = base64.StdEncoding.EncodeToString(body)
				ev.PubKey = k.pk
				h := sha256.Sum256(ev.Serialize())
				sig, err := schnorr.Sign(k.sk, h[:], schnorr.FastSign())
				if err != nil {
					errs <- err
					return
				}
				ev.ID, ev.Sig = hex.EncodeToString(h[:]), hex.EncodeToString(sig.Serialize())
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// checkIDSet fails unless got holds exactly the ids of want, each once.
func checkIDSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for _, id := range got {
		seen[id]++
	}
	var dup, extra, missing []string
	for id, k := range seen {
		if k > 1 {
			dup = append(dup, id)
		}
	}
	wantSet := make(map[string]bool, len(want))
	for _, id := range want {
		wantSet[id] = true
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id := range seen {
		if !wantSet[id] {
			extra = append(extra, id)
		}
	}
	if len(dup)+len(extra)+len(missing) > 0 {
		t.Errorf("%s: %d ids, want %d: %d reported twice %.3q, %d not expected %.3q, %d missing %.3q",
			what, len(got), len(want), len(dup), dup, len(extra), extra, len(missing), missing)
	}
}

// publishPipelined sends evs on a few new connections at once (the relay
// checks each connection's events in turn), each without waiting for
// every OK, then checks that every one was accepted.
func publishPipelined(t *testing.T, url string, evs []nostr.Event) {
	t.Helper()
	conns := max(2, runtime.GOMAXPROCS(0))
	errs := make(chan error, 2*conns)
	for c := range conns {
		pub := mustDial(t, url)
		var mine []nostr.Event
		for i := c; i < len(evs); i += conns {
			mine = append(mine, evs[i])
		}
		go func() {
			for _, ev := range mine {
				b, _ := json.Marshal([]any{"EVENT", ev})
				if err := pub.c.WriteMessage(websocket.TextMessage, b); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
		go func() {
			deadline := time.Now().Add(5 * time.Minute)
			for _, ev := range mine {
				id, ok, msg, err := pub.nextOK(deadline)
				if err != nil {
					errs <- fmt.Errorf("reading OKs: %w", err)
					return
				}
				if !ok || id != ev.ID {
					errs <- fmt.Errorf("OK %s %v %q, want OK %s true", id, ok, msg, ev.ID)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 * conns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
