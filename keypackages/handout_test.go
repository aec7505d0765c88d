package keypackages_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/keypackages"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/policy"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
	"github.com/nbd-wtf/go-nostr"
)

// deletingStore is memStore with Delete, recording the reasons.
type deletingStore struct {
	*memStore
	reasons   []storage.Reason
	deleteErr error
}

func (d *deletingStore) Delete(_ context.Context, ids []string, reason storage.Reason) ([]storage.Deletion, error) {
	if d.deleteErr != nil {
		return nil, d.deleteErr
	}
	var out []storage.Deletion
	d.events = slices.DeleteFunc(d.events, func(ev *nostr.Event) bool {
		if slices.Contains(ids, ev.ID) {
			out = append(out, storage.Deletion{ID: ev.ID, Kind: ev.Kind, PubKey: ev.PubKey, Reason: reason})
			return true
		}
		return false
	})
	d.reasons = append(d.reasons, reason)
	return out, nil
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// handoutFixture is one author with a last-resort KeyPackage and three
// others (created at 200, 300, 400), and a second author with one.
type handoutFixture struct {
	st                     *deletingStore
	author, other          string
	lastResort, p1, p2, p3 string
	otherP                 string
}

func newHandoutFixture(t *testing.T) handoutFixture {
	t.Helper()
	lr := ownSource(t, "last resort", ownOptions{})
	var plain [3]source
	for i := range plain {
		plain[i] = ownSource(t, fmt.Sprint("plain ", i), ownOptions{extensions: mls.Extensions{}})
	}
	other := ownSource(t, "other", ownOptions{extensions: mls.Extensions{}})
	mk := func(s source, content []byte, created int64) *nostr.Event {
		ev := signed(t, s, 30443, b64(content), eraMDK08(s))
		ev.CreatedAt = nostr.Timestamp(created)
		if err := ev.Sign(s.secretKey); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	// Content from another source is fine here: the hand-out only parses
	// it for last_resort, and these events never pass the validator.
	evs := []*nostr.Event{
		mk(lr, lr.framed, 100),
		mk(lr, plain[0].framed, 200),
		mk(lr, plain[1].framed, 300),
		mk(lr, plain[2].framed, 400),
		mk(other, other.framed, 500),
	}
	return handoutFixture{
		st:     &deletingStore{memStore: &memStore{events: evs}},
		author: lr.pubkey, other: other.pubkey,
		lastResort: evs[0].ID, p1: evs[1].ID, p2: evs[2].ID, p3: evs[3].ID, otherP: evs[4].ID,
	}
}

func ids(evs []*nostr.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string { slices.Sort(s); return s }

func TestHandoutServeReq(t *testing.T) {
	fx := newHandoutFixture(t)
	clk := &fakeClock{t: clock}
	h := keypackages.NewHandout(keypackages.HandoutConfig{
		ClaimTTL: time.Minute,
		Now:      clk.now,
		Claims:   keypackages.NewMemoryClaims(clk.now),
	})
	ctx := context.Background()
	alice, bob, carol, dave := "alice", "bob", "carol", "dave"
	req := nostr.Filters{{Kinds: []int{443, 30443}, Authors: []string{fx.author}}}
	steps := []struct {
		name      string
		requester string
		filters   nostr.Filters
		want      []string
		err       error
	}{
		{"unauthenticated is refused", "", req, nil, keypackages.ErrHandoutAuth},
		{"the oldest non-last-resort plus the last resort", alice, req, sorted(fx.p1, fx.lastResort), nil},
		{"the same requester again gets the same one", alice, req, sorted(fx.p1, fx.lastResort), nil},
		{"another requester gets a different one", bob, req, sorted(fx.p2, fx.lastResort), nil},
		{"a third gets the last plain one", carol, req, sorted(fx.p3, fx.lastResort), nil},
		{"exhausted supply leaves the last resort only", dave, req, []string{fx.lastResort}, nil},
		{"several authors are served each", dave,
			nostr.Filters{{Kinds: []int{30443}, Authors: []string{fx.author, fx.other}}}, sorted(fx.lastResort, fx.otherP), nil},
	}
	for _, s := range steps {
		got, err := h.ServeReq(ctx, fx.st, s.requester, s.filters)
		if !errors.Is(err, s.err) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.err)
		}
		if g := ids(got); !slices.Equal(g, s.want) && (len(g) > 0 || len(s.want) > 0) {
			t.Fatalf("%s: got %v, want %v", s.name, g, s.want)
		}
	}

	// Nothing is deleted before the claims end; after, the claimed ones go.
	if ds, err := h.SweepClaims(ctx, fx.st, clk.t); err != nil || len(ds) != 0 {
		t.Fatalf("early sweep = %v, %v; want nothing", ds, err)
	}
	clk.t = clk.t.Add(time.Minute)
	ds, err := h.SweepClaims(ctx, fx.st, clk.t)
	if err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, d := range ds {
		gone = append(gone, d.ID)
	}
	if want := sorted(fx.p1, fx.p2, fx.p3, fx.otherP); !slices.Equal(sorted(gone...), want) {
		t.Fatalf("swept %v, want %v", gone, want)
	}
	if len(fx.st.reasons) != 1 || fx.st.reasons[0] != storage.ReasonClaimed {
		t.Fatalf("delete reasons %v", fx.st.reasons)
	}
	got, err := h.ServeReq(ctx, fx.st, alice, req)
	if err != nil || !slices.Equal(ids(got), []string{fx.lastResort}) {
		t.Fatalf("after the sweep alice gets %v, %v; want the last resort only", ids(got), err)
	}
}

func TestHandoutRateLimit(t *testing.T) {
	fx := newHandoutFixture(t)
	clk := &fakeClock{t: clock}
	h := keypackages.NewHandout(keypackages.HandoutConfig{
		Now:     clk.now,
		Limiter: policy.NewTokenBucket(2.0/60, 2, clk.now),
	})
	req := nostr.Filters{{Kinds: []int{30443}, Authors: []string{fx.author}}}
	for i, want := range []error{nil, nil, keypackages.ErrHandoutRate} {
		_, err := h.ServeReq(context.Background(), fx.st, "alice", req)
		if !errors.Is(err, want) {
			t.Fatalf("hand-out %d: err = %v, want %v", i+1, err, want)
		}
	}
	if _, err := h.ServeReq(context.Background(), fx.st, "bob", req); err != nil {
		t.Fatalf("another requester is limited separately: %v", err)
	}
	var r interface{ OKMessage() string }
	if !errors.As(keypackages.ErrHandoutRate, &r) || r.OKMessage()[:13] != "rate-limited:" {
		t.Fatalf("rate refusal message %v", keypackages.ErrHandoutRate)
	}
}

func TestHandoutHandlesReq(t *testing.T) {
	pk := "aa"
	tests := []struct {
		name    string
		filters nostr.Filters
		want    bool
	}{
		{"kinds 443 and 30443 by authors", nostr.Filters{{Kinds: []int{443, 30443}, Authors: []string{pk}}}, true},
		{"several hand-out filters", nostr.Filters{{Kinds: []int{443}, Authors: []string{pk}}, {Kinds: []int{30443}, Authors: []string{pk}}}, true},
		{"no authors", nostr.Filters{{Kinds: []int{30443}}}, false},
		{"no kinds", nostr.Filters{{Authors: []string{pk}}}, false},
		{"another kind too", nostr.Filters{{Kinds: []int{30443, 0}, Authors: []string{pk}}}, false},
		{"one filter is not a hand-out", nostr.Filters{{Kinds: []int{30443}, Authors: []string{pk}}, {Kinds: []int{1}}}, false},
		{"live only", nostr.Filters{{Kinds: []int{30443}, Authors: []string{pk}, LimitZero: true}}, false},
	}
	h := keypackages.NewHandout(keypackages.HandoutConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.HandlesReq(tt.filters); got != tt.want {
				t.Fatalf("HandlesReq = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMemoryClaims runs the store's hand-out claim cases against the
// in-process claims.
func TestMemoryClaims(t *testing.T) {
	storetest.RunHandoutClaims(t, func(t *testing.T) storetest.ClaimsOpener {
		c := keypackages.NewMemoryClaims(nil)
		return func(*testing.T) storage.HandoutClaims { return c }
	})
}

// TestHandoutTwinsAreOneKeyPackage: a KeyPackage published as a 443 and a
// 30443 is handed out once, as one of its events, and the twin is never
// handed to anyone else.
func TestHandoutTwinsAreOneKeyPackage(t *testing.T) {
	src := ownSource(t, "twins", ownOptions{extensions: mls.Extensions{}})
	second := ownSource(t, "second", ownOptions{extensions: mls.Extensions{}})
	legacy := signed(t, src, 443, b64(src.bare), eraMIP443(src))
	legacy.CreatedAt = 100
	current := signed(t, src, 30443, b64(src.framed), eraMDK08(src))
	current.CreatedAt = 200
	other := signed(t, src, 30443, b64(second.framed), with(eraMDK08(second), "d", nostr.Tag{"d", "second device"}))
	other.CreatedAt = 300
	for _, ev := range []*nostr.Event{legacy, current, other} {
		if err := ev.Sign(src.secretKey); err != nil {
			t.Fatal(err)
		}
	}
	st := &deletingStore{memStore: &memStore{events: []*nostr.Event{legacy, current, other}}}
	h := keypackages.NewHandout(keypackages.HandoutConfig{ClaimTTL: time.Minute, Claims: keypackages.NewMemoryClaims(nil)})
	req := nostr.Filters{{Kinds: []int{443, 30443}, Authors: []string{src.pubkey}}}
	ctx := context.Background()
	got, err := h.ServeReq(ctx, st, "alice", req)
	if err != nil || len(got) != 1 || (got[0].ID != legacy.ID && got[0].ID != current.ID) {
		t.Fatalf("alice got %v, %v; want one event of the oldest KeyPackage", ids(got), err)
	}
	if got, err := h.ServeReq(ctx, st, "bob", req); err != nil || !slices.Equal(ids(got), []string{other.ID}) {
		t.Fatalf("bob got %v, %v; want the other KeyPackage, not the twin", ids(got), err)
	}
	if got, err := h.ServeReq(ctx, st, "carol", req); err != nil || len(got) != 0 {
		t.Fatalf("carol got %v, %v; want nothing", ids(got), err)
	}
}

func TestPolicyNIP11Handout(t *testing.T) {
	_, v := keypackages.Policy{}.NIP11Field()
	if got := v.(map[string]any)["handout"].(map[string]any); got["enabled"] != false {
		t.Fatalf("handout off = %v", got)
	}
	h := keypackages.NewHandout(keypackages.HandoutConfig{ClaimTTL: 5 * time.Minute, Rate: 10, Burst: 10})
	_, v = keypackages.Policy{Handout: h}.NIP11Field()
	got := v.(map[string]any)["handout"].(map[string]any)
	if got["enabled"] != true || got["claim_ttl_seconds"] != int64(300) || got["rate_per_minute"] != float64(10) {
		t.Fatalf("handout on = %v", got)
	}
	if reasons := v.(map[string]any)["deleted_on"].([]string); !slices.Contains(reasons, string(storage.ReasonClaimed)) {
		t.Fatalf("deleted_on %v lacks claimed while the hand-out is on", reasons)
	}
}

func TestHandoutSweepFailureKeepsClaims(t *testing.T) {
	fx := newHandoutFixture(t)
	clk := &fakeClock{t: clock}
	h := keypackages.NewHandout(keypackages.HandoutConfig{ClaimTTL: time.Minute, Now: clk.now, Claims: keypackages.NewMemoryClaims(clk.now)})
	ctx := context.Background()
	req := nostr.Filters{{Kinds: []int{30443}, Authors: []string{fx.author}}}
	if got, err := h.ServeReq(ctx, fx.st, "alice", req); err != nil || !slices.Equal(ids(got), sorted(fx.p1, fx.lastResort)) {
		t.Fatalf("alice: %v, %v", ids(got), err)
	}
	clk.t = clk.t.Add(time.Minute)
	down := errors.New("store down")
	fx.st.deleteErr = down
	if _, err := h.SweepClaims(ctx, fx.st, clk.t); !errors.Is(err, down) {
		t.Fatalf("sweep err = %v, want %v", err, down)
	}
	// The lapsed claim still keeps p1 from anyone else.
	if got, err := h.ServeReq(ctx, fx.st, "bob", req); err != nil || !slices.Equal(ids(got), sorted(fx.p2, fx.lastResort)) {
		t.Fatalf("bob after a failed sweep: %v, %v", ids(got), err)
	}
	fx.st.deleteErr = nil
	ds, err := h.SweepClaims(ctx, fx.st, clk.t)
	if err != nil || len(ds) != 1 || ds[0].ID != fx.p1 {
		t.Fatalf("retried sweep = %v, %v; want p1 deleted", ds, err)
	}
}
