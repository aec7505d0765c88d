package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/burrow-relay/burrow/storage"
	"github.com/nbd-wtf/go-nostr"
)

// contractStore is a test double for the KeyPackage and ban parts of the
// storage contract, over a real store for everything else, so the engine's
// wiring is tested whatever each backend implements. SaveKeyPackage records
// what it was given and fails with kpErr when set; Ban deletes with the
// real store and then refuses the author's events with ErrBanned.
type contractStore struct {
	storage.Store
	mu     sync.Mutex
	kpErr  error
	kps    []storage.KeyPackage
	banned map[string]bool
}

func newContractStore(t *testing.T) *contractStore {
	return &contractStore{Store: newTestStore(t), banned: map[string]bool{}}
}

func (s *contractStore) isBanned(pk string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.banned[pk]
}

func (s *contractStore) Save(ctx context.Context, ev *nostr.Event) (storage.Result, error) {
	if s.isBanned(ev.PubKey) {
		return storage.Result{}, fmt.Errorf("double: %w", storage.ErrBanned)
	}
	return s.Store.Save(ctx, ev)
}

func (s *contractStore) SaveKeyPackage(ctx context.Context, ev *nostr.Event, kp storage.KeyPackage) (storage.Result, error) {
	s.mu.Lock()
	s.kps = append(s.kps, kp)
	err := s.kpErr
	s.mu.Unlock()
	if err != nil {
		return storage.Result{}, fmt.Errorf("double: %w", err)
	}
	return s.Save(ctx, ev)
}

func (s *contractStore) Ban(ctx context.Context, pk string) ([]storage.Deletion, error) {
	var ids []string
	for ev, err := range s.Store.Query(ctx, nostr.Filter{Authors: []string{pk}}) {
		if err != nil {
			return nil, err
		}
		ids = append(ids, ev.ID)
	}
	s.mu.Lock()
	s.banned[pk] = true
	s.mu.Unlock()
	return s.Store.Delete(ctx, ids, storage.ReasonBanned)
}

func (s *contractStore) BannedPubKeys(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for pk := range s.banned {
		out = append(out, pk)
	}
	return out, nil
}

// refusal is a SaveHook refusal with its own OK message.
type refusal string

func (r refusal) Error() string     { return string(r) }
func (r refusal) OKMessage() string { return string(r) }

// stubHook stores kind 30443 with SaveKeyPackage, refusing events whose
// content is "refuse"; it describes itself in NIP-11 and serves one route.
type stubHook struct{ calls *int }

func (h stubHook) Handles(ev *nostr.Event) bool { return ev.Kind == 30443 }

func (h stubHook) Save(ctx context.Context, st storage.Store, ev *nostr.Event) (storage.Result, error) {
	*h.calls++
	if ev.Content == "refuse" {
		return storage.Result{}, fmt.Errorf("stub: %w", refusal("invalid: stub says no"))
	}
	return st.SaveKeyPackage(ctx, ev, storage.KeyPackage{Ref: "ref-" + ev.Content, SlotCap: 2})
}

func (h stubHook) NIP11Field() (string, any) { return "stub", map[string]any{"slot_cap": 2} }

func (h stubHook) Routes(st storage.Store) map[string]http.Handler {
	return map[string]http.Handler{"GET /stub/count": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := st.Count(r.Context(), nostr.Filter{Kinds: []int{30443}})
		fmt.Fprint(w, n)
	})}
}

func TestSaveHookAnswers(t *testing.T) {
	tests := []struct {
		name      string
		kind      int
		content   string
		storeErr  error
		wantOK    bool
		wantMsg   string
		wantCalls int
		wantKP    string // Ref the store was given, "" for none
	}{
		{name: "a handled kind is stored through the hook", kind: 30443, content: "a", wantOK: true, wantCalls: 1, wantKP: "ref-a"},
		{name: "a hook refusal is answered with its own message", kind: 30443, content: "refuse", wantMsg: "invalid: stub says no", wantCalls: 1},
		{name: "the slot cap is blocked", kind: 30443, content: "b", storeErr: storage.ErrSlotCap,
			wantMsg: "blocked: too many KeyPackage slots", wantCalls: 1, wantKP: "ref-b"},
		{name: "a banned author is blocked", kind: 30443, content: "c", storeErr: storage.ErrBanned,
			wantMsg: "blocked: banned", wantCalls: 1, wantKP: "ref-c"},
		{name: "a backend failure is an error", kind: 30443, content: "d", storeErr: errors.New("disk on fire"),
			wantMsg: "error: could not store the event, try again later", wantCalls: 1, wantKP: "ref-d"},
		{name: "other kinds bypass the hook", kind: 1, content: "e", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newContractStore(t)
			store.kpErr = tt.storeErr
			calls := 0
			r := startRelay(t, Config{Hooks: []Hook{{Store: stubHook{&calls}, NIP11: stubHook{&calls}, Routes: stubHook{&calls}}}}, store)
			c := dial(t, r.url, nil)
			tags := nostr.Tags{}
			if tt.kind == 30443 {
				tags = nostr.Tags{{"d", tt.content}}
			}
			ev := newSigner(t).event(t, tt.kind, tt.content, tags, 0)
			got := c.publish(ev)
			if got.ok != tt.wantOK || got.msg != tt.wantMsg {
				t.Fatalf("OK %v %q, want %v %q", got.ok, got.msg, tt.wantOK, tt.wantMsg)
			}
			if calls != tt.wantCalls {
				t.Fatalf("hook called %d times, want %d", calls, tt.wantCalls)
			}
			var refs []string
			for _, kp := range store.kps {
				refs = append(refs, kp.Ref)
			}
			if want := slices.DeleteFunc([]string{tt.wantKP}, func(s string) bool { return s == "" }); !slices.Equal(refs, want) {
				t.Fatalf("SaveKeyPackage refs %v, want %v", refs, want)
			}
			n, err := store.Count(context.Background(), nostr.Filter{IDs: []string{ev.ID}})
			if err != nil {
				t.Fatal(err)
			}
			if (n == 1) != tt.wantOK {
				t.Fatalf("stored %d, want stored=%v", n, tt.wantOK)
			}
		})
	}
}

// A hook stores events or takes them as envelopes: one of the two.
func TestHookNeedsOneWayToSave(t *testing.T) {
	calls := 0
	for _, h := range []Hook{{}, {NIP11: stubHook{&calls}}, {Store: stubHook{&calls}, Envelope: envelopeStub{}}} {
		if _, err := New(Config{Hooks: []Hook{h}}, newContractStore(t)); err == nil {
			t.Fatalf("New accepted hook %+v", h)
		}
	}
	srv, err := New(Config{Hooks: []Hook{{Envelope: envelopeStub{}}}}, newContractStore(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown(context.Background())
}

// envelopeStub takes no event.
type envelopeStub struct{}

func (envelopeStub) Handles(*nostr.Event) bool { return false }
func (envelopeStub) SaveEnvelope(context.Context, storage.Store, *nostr.Event) (Envelope, error) {
	return Envelope{}, nil
}

func TestSaveHookDescribesItselfAndServesRoutes(t *testing.T) {
	store := newContractStore(t)
	calls := 0
	r := startRelay(t, Config{Hooks: []Hook{{Store: stubHook{&calls}, NIP11: stubHook{&calls}, Routes: stubHook{&calls}}}}, store)
	doc := fetchNIP11(t, r)
	stub, ok := doc["stub"].(map[string]any)
	if !ok || stub["slot_cap"] != float64(2) {
		t.Fatalf("NIP-11 stub field = %v, want {slot_cap: 2}", doc["stub"])
	}
	if got := dial(t, r.url, nil).publish(newSigner(t).event(t, 30443, "x", nostr.Tags{{"d", "x"}}, 0)); !got.ok {
		t.Fatalf("publish: %+v", got)
	}
	resp, err := http.Get(r.httpURL() + "/stub/count")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "1" {
		t.Fatalf("GET /stub/count = %d %q, want 200 \"1\"", resp.StatusCode, body)
	}
}

func TestCheckVanish(t *testing.T) {
	const self = "wss://relay.example/"
	tests := []struct {
		name    string
		service string
		tags    nostr.Tags
		kind    int
		want    string
	}{
		{"names this relay", self, nostr.Tags{{"relay", "wss://relay.example"}}, 62, ""},
		{"names this relay among others", self, nostr.Tags{{"relay", "wss://other.example"}, {"relay", "wss://relay.example/"}}, 62, ""},
		{"the scheme is not compared", "ws://relay.example", nostr.Tags{{"relay", "wss://relay.example/"}}, 62, ""},
		{"a bare host names this relay", self, nostr.Tags{{"relay", "relay.example"}}, 62, ""},
		{"another path is another relay", self, nostr.Tags{{"relay", "wss://relay.example/other"}}, 62, "invalid: request to vanish names another relay"},
		{"names every relay", self, nostr.Tags{{"relay", "ALL_RELAYS"}}, 62, ""},
		{"names another relay", self, nostr.Tags{{"relay", "wss://other.example"}}, 62, "invalid: request to vanish names another relay"},
		{"names no relay", self, nostr.Tags{{"p", "x"}}, 62, "invalid: request to vanish names another relay"},
		{"an empty relay tag", self, nostr.Tags{{"relay"}}, 62, "invalid: request to vanish names another relay"},
		{"ALL_RELAYS is case-sensitive", self, nostr.Tags{{"relay", "all_relays"}}, 62, "invalid: request to vanish names another relay"},
		{"other kinds are not checked", self, nil, 1, ""},
		{"no service URL: a named relay is refused", "", nostr.Tags{{"relay", "wss://relay.example"}}, 62, vanishNeedsServiceURL},
		{"no service URL: ALL_RELAYS applies", "", nostr.Tags{{"relay", "wss://relay.example"}, {"relay", "ALL_RELAYS"}}, 62, ""},
		{"no service URL, no relay named", "", nostr.Tags{{"p", "x"}}, 62, "invalid: request to vanish names another relay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkVanish(&nostr.Event{Kind: tt.kind, Tags: tt.tags}, tt.service); got != tt.want {
				t.Fatalf("checkVanish = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVanishMustNameThisRelay(t *testing.T) {
	r := startRelay(t, Config{}, newTestStore(t))
	c := dial(t, r.url, nil)
	s := newSigner(t)
	tests := []struct {
		name  string
		relay string
		ok    bool
	}{
		{"another relay is refused", "wss://elsewhere.example", false},
		{"this relay's URL is accepted", r.url + "/", true},
		{"ALL_RELAYS is accepted", "ALL_RELAYS", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := s.event(t, 62, "", nostr.Tags{{"relay", tt.relay}}, nostr.Now()+nostr.Timestamp(i))
			got := c.publish(ev)
			if got.ok != tt.ok {
				t.Fatalf("OK %v %q, want %v", got.ok, got.msg, tt.ok)
			}
			if !tt.ok && got.msg != "invalid: request to vanish names another relay" {
				t.Fatalf("refusal %q", got.msg)
			}
		})
	}
}

func TestBanPubKey(t *testing.T) {
	admin, stranger, author, other := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	store := newContractStore(t)
	r := startRelay(t, Config{Admins: []string{admin.pk}}, store)
	c := dial(t, r.url, nil)
	var authored []string
	for i := range 3 {
		ev := author.event(t, 1, fmt.Sprint("note ", i), nil, 0)
		if got := c.publish(ev); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
		authored = append(authored, ev.ID)
	}
	bystander := other.event(t, 1, "still here", nil, 0)
	c.publish(bystander)

	calls := []struct {
		name    string
		caller  signer
		params  []any
		wantErr bool
	}{
		{"a stranger may not ban", stranger, []any{author.pk, "spam"}, true},
		{"a malformed pubkey is refused", admin, []any{"npub1nope", "spam"}, true},
		{"an admin bans", admin, []any{author.pk, "spam"}, false},
		{"banning twice is harmless", admin, []any{author.pk, "again"}, false},
	}
	for _, tt := range calls {
		resp := manage(t, r, tt.caller, "banpubkey", tt.params...)
		if (resp.Error != "") != tt.wantErr {
			t.Fatalf("%s: error %q, want error=%v", tt.name, resp.Error, tt.wantErr)
		}
	}
	ctx := context.Background()
	if n, _ := store.Count(ctx, nostr.Filter{Authors: []string{author.pk}}); n != 0 {
		t.Fatalf("%d events of the banned author still served", n)
	}
	if n, _ := store.Count(ctx, nostr.Filter{IDs: []string{bystander.ID}}); n != 1 {
		t.Fatal("a bystander's event was removed")
	}
	if got := counterValue(t, r.reg, "burrow_events_deleted_total"); got != float64(len(authored)) {
		t.Fatalf("burrow_events_deleted_total = %v, want %d", got, len(authored))
	}
	if got := c.publish(author.event(t, 1, "back again", nil, 0)); got.ok || got.msg != "blocked: banned" {
		t.Fatalf("banned author's event: %+v, want blocked: banned", got)
	}
	if resp := manage(t, r, stranger, "listbannedpubkeys"); resp.Error == "" {
		t.Fatal("a stranger listed bans")
	}
	resp := manage(t, r, admin, "listbannedpubkeys")
	b, _ := json.Marshal(resp.Result)
	if resp.Error != "" || !strings.Contains(string(b), author.pk) || !strings.Contains(string(b), `"again"`) {
		t.Fatalf("listbannedpubkeys = %s (error %q), want %s with its reason", b, resp.Error, author.pk)
	}
}
