package keypackages_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"iter"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/keypackages"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/storage"
)

// memStore is the part of storage.Store the policy and the supply endpoint
// use, in memory: SaveKeyPackage records its arguments and keeps the event
// (or fails with err); Query and Count match NIP-01 filters.
type memStore struct {
	storage.Store
	err    error
	events []*nostr.Event
	kps    []storage.KeyPackage
}

func (m *memStore) SaveKeyPackage(_ context.Context, ev *nostr.Event, kp storage.KeyPackage) (storage.Result, error) {
	m.kps = append(m.kps, kp)
	if m.err != nil {
		return storage.Result{}, m.err
	}
	m.events = append(m.events, ev)
	return storage.Result{}, nil
}

func (m *memStore) Query(_ context.Context, f nostr.Filter) iter.Seq2[*nostr.Event, error] {
	var out []*nostr.Event
	for _, ev := range m.events {
		if f.Matches(ev) {
			out = append(out, ev)
		}
	}
	slices.SortFunc(out, func(a, b *nostr.Event) int {
		return cmp.Or(cmp.Compare(b.CreatedAt, a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return func(yield func(*nostr.Event, error) bool) {
		for _, ev := range out {
			if !yield(ev, nil) {
				return
			}
		}
	}
}

func (m *memStore) Count(ctx context.Context, f nostr.Filter) (int64, error) {
	f.Limit = 0
	var n int64
	for range m.Query(ctx, f) {
		n++
	}
	return n, nil
}

func testPolicy() keypackages.Policy {
	return keypackages.Policy{Validator: keypackages.Validator{Now: func() time.Time { return clock }}, SlotCap: 3, EvictAfter: 48 * time.Hour}
}

func TestPolicySave(t *testing.T) {
	s := ownSource(t, "own", ownOptions{})
	good := signed(t, s, 30443, b64(s.framed), eraMDK08(s))
	bad := signed(t, s, 30443, b64([]byte("not a key package")), eraMDK08(s))
	note := signed(t, s, 1, "hello", nil)
	tests := []struct {
		name     string
		ev       *nostr.Event
		storeErr error
		wantErr  error  // matched with errors.Is; nil for success
		wantMsg  string // OKMessage of a refusal
		wantKP   bool   // whether the store was asked
	}{
		{name: "a valid KeyPackage is stored with its rules", ev: good, wantKP: true},
		{name: "an invalid one is refused before the store", ev: bad, wantErr: keypackages.ErrFraming, wantMsg: "invalid: "},
		{name: "the store's slot cap comes back wrapped", ev: good, storeErr: storage.ErrSlotCap, wantErr: storage.ErrSlotCap, wantKP: true},
		{name: "a ban comes back wrapped", ev: good, storeErr: storage.ErrBanned, wantErr: storage.ErrBanned, wantKP: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &memStore{err: tt.storeErr}
			p := testPolicy()
			if !p.Handles(tt.ev) || p.Handles(note) {
				t.Fatal("Handles must take kinds 443 and 30443 only")
			}
			_, err := p.Save(context.Background(), st, tt.ev)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Save: %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" {
				var r interface{ OKMessage() string }
				if !errors.As(err, &r) || len(r.OKMessage()) <= len(tt.wantMsg) || r.OKMessage()[:len(tt.wantMsg)] != tt.wantMsg {
					t.Fatalf("refusal %v has no OK message starting %q", err, tt.wantMsg)
				}
			}
			if (len(st.kps) == 1) != tt.wantKP {
				t.Fatalf("store asked %d times, want asked=%v", len(st.kps), tt.wantKP)
			}
			if !tt.wantKP {
				return
			}
			want := storage.KeyPackage{Ref: s.ref, NotAfter: time.Unix(int64(s.notAfter), 0).UTC().Add(time.Hour), SlotCap: 3, EvictAfter: 48 * time.Hour}
			if got := st.kps[0]; got.Ref != want.Ref || !got.NotAfter.Equal(want.NotAfter) || got.SlotCap != want.SlotCap || got.EvictAfter != want.EvictAfter {
				t.Fatalf("SaveKeyPackage got %+v, want %+v", got, want)
			}
		})
	}
}

func TestPolicyRules(t *testing.T) {
	tests := []struct {
		name     string
		policy   keypackages.Policy
		notAfter uint64
		want     storage.KeyPackage
	}{
		{"not_after plus the default grace", keypackages.Policy{SlotCap: 10, EvictAfter: time.Hour}, 1_800_000_000,
			storage.KeyPackage{Ref: "r", NotAfter: time.Unix(1_800_003_600, 0), SlotCap: 10, EvictAfter: time.Hour}},
		{"a configured grace", keypackages.Policy{Validator: keypackages.Validator{Grace: time.Minute}}, 1_800_000_000,
			storage.KeyPackage{Ref: "r", NotAfter: time.Unix(1_800_000_060, 0)}},
		{"no cap leaves the eviction age unset", keypackages.Policy{SlotCap: 0, EvictAfter: time.Hour}, 1_800_000_000,
			storage.KeyPackage{Ref: "r", NotAfter: time.Unix(1_800_003_600, 0)}},
		{"ts-mls's never-expiring default is clamped", keypackages.Policy{}, math.MaxInt64,
			storage.KeyPackage{Ref: "r", NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}},
		{"the largest not_after is clamped", keypackages.Policy{}, math.MaxUint64,
			storage.KeyPackage{Ref: "r", NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.policy.Rules(keypackages.Info{Ref: "r", NotAfter: tt.notAfter})
			if got.Ref != tt.want.Ref || !got.NotAfter.Equal(tt.want.NotAfter) || got.SlotCap != tt.want.SlotCap || got.EvictAfter != tt.want.EvictAfter {
				t.Fatalf("Rules = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPolicyNIP11Field(t *testing.T) {
	name, v := keypackages.Policy{SlotCap: 10, EvictAfter: 168 * time.Hour}.NIP11Field()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if name != "keypackages" || doc["validated"] != true || doc["slot_cap"] != float64(10) ||
		doc["evict_after_seconds"] != float64(604800) || doc["lifetime_grace_seconds"] != float64(3600) ||
		doc["max_lifetime_seconds"] != float64(7261200) || doc["supply_endpoint"] != "/keypackages/supply" {
		t.Fatalf("NIP-11 %s = %s", name, b)
	}
	var reasons []string
	for _, r := range doc["deleted_on"].([]any) {
		reasons = append(reasons, r.(string))
	}
	for _, r := range []storage.Reason{storage.ReasonDeletionRequest, storage.ReasonReplaced, storage.ReasonTwin, storage.ReasonExpired,
		storage.ReasonEvicted, storage.ReasonVanish, storage.ReasonBanned, storage.ReasonAdmin} {
		if !slices.Contains(reasons, string(r)) {
			t.Errorf("deleted_on %v lacks %s", reasons, r)
		}
	}
	_, v = keypackages.Policy{Validator: keypackages.Validator{MaxLifetime: -1}}.NIP11Field()
	if got := v.(map[string]any)["max_lifetime_seconds"]; got != nil {
		t.Fatalf("max_lifetime_seconds without a cap = %v, want null", got)
	}
}

func TestSupply(t *testing.T) {
	lr := ownSource(t, "last resort", ownOptions{})
	plain := ownSource(t, "plain", ownOptions{extensions: mls.Extensions{}})
	// Each KeyPackage's credential names its own Nostr key, so each
	// author's supply is checked separately.
	st := &memStore{}
	at := func(ev *nostr.Event, ts int64) *nostr.Event {
		ev.CreatedAt = nostr.Timestamp(ts)
		return ev
	}
	st.events = []*nostr.Event{
		at(signed(t, lr, 30443, b64(lr.framed), eraMDK08(lr)), 100),
		at(signed(t, lr, 443, b64(lr.framed), eraMIP443(lr)), 200),
		at(signed(t, plain, 30443, b64(plain.framed), eraMDK08(plain)), 300),
		at(signed(t, lr, 1, "not a KeyPackage", nil), 400),
	}
	for _, ev := range st.events {
		if err := ev.Sign(map[string]string{lr.pubkey: lr.secretKey, plain.pubkey: plain.secretKey}[ev.PubKey]); err != nil {
			t.Fatal(err)
		}
	}
	nobody, err := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	i64 := func(n int64) *int64 { return &n }
	tests := []struct {
		name   string
		pubkey string
		want   keypackages.Supply
	}{
		{"an author with one last-resort KeyPackage published as a slot and as a legacy twin", lr.pubkey,
			keypackages.Supply{PubKey: lr.pubkey, KeyPackages: 2, Slots: 1, Legacy: 1, LastResort: i64(1), Distinct: i64(1), NewestCreatedAt: i64(200)}},
		{"an author without last resort", plain.pubkey,
			keypackages.Supply{PubKey: plain.pubkey, KeyPackages: 1, Slots: 1, LastResort: i64(0), Distinct: i64(1), NewestCreatedAt: i64(300)}},
		{"an author with none", nobody,
			keypackages.Supply{KeyPackages: 0, LastResort: i64(0), Distinct: i64(0)}},
	}
	mux := http.NewServeMux()
	for pattern, h := range testPolicy().Routes(st) {
		mux.Handle(pattern, h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want.PubKey == "" {
				tt.want.PubKey = tt.pubkey
			}
			got, err := keypackages.SupplyOf(context.Background(), st, tt.pubkey)
			if err != nil {
				t.Fatal(err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tt.want)
			if string(gj) != string(wj) {
				t.Fatalf("SupplyOf = %s, want %s", gj, wj)
			}
			resp, err := http.Get(srv.URL + "/keypackages/supply?pubkey=" + tt.pubkey)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body keypackages.Supply
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET: %d %v", resp.StatusCode, err)
			}
			if bj, _ := json.Marshal(body); string(bj) != string(wj) {
				t.Fatalf("GET = %s, want %s", bj, wj)
			}
		})
	}
	for _, q := range []string{"", "?pubkey=npub1xyz", "?pubkey=" + lr.pubkey[:63]} {
		resp, err := http.Get(srv.URL + "/keypackages/supply" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("GET %q: status %d, want 400", q, resp.StatusCode)
		}
	}
}
