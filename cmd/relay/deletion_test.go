package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip86"
)

// The "KeyPackages that really die" wiring, end to end on a loopback port
// over embedded SQLite: the slot cap, NIP-86 bans, NIP-62 requests to
// vanish, a gift wrap deleted by its recipient, the supply endpoint and the
// NIP-11 description. The rules themselves are tested in storage/storetest.

const testTimeout = 10 * time.Second

// liveBackends are the stores every test here runs on.
var liveBackends = []string{"sqlite", "postgres"}

// author is a Nostr key that publishes KeyPackages naming itself.
type author struct{ sk, pk string }

func newAuthor(t testing.TB) author {
	t.Helper()
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return author{sk, pk}
}

// sign signs an event of a's at created (0 means now).
func (a author) sign(t testing.TB, kind int, content string, tags nostr.Tags, created nostr.Timestamp) nostr.Event {
	t.Helper()
	if created == 0 {
		created = nostr.Now()
	}
	if tags == nil {
		tags = nostr.Tags{}
	}
	ev := nostr.Event{Kind: kind, CreatedAt: created, Tags: tags, Content: content}
	if err := ev.Sign(a.sk); err != nil {
		t.Fatal(err)
	}
	return ev
}

// keyPackage makes a fresh KeyPackage for a, current for 80 days, marked
// last resort when asked, and returns its base64 content and ref.
func (a author) keyPackage(t testing.TB, lastResort bool) (content, ref string) {
	t.Helper()
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := suite.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	identity, _ := hex.DecodeString(a.pk)
	exts := mls.Extensions{}
	if lastResort {
		exts = mls.Extensions{{Type: mls.ExtLastResort}}
	}
	now := time.Now()
	kp, _, err := mls.NewKeyPackage(suite, signer, mls.KeyPackageParams{
		Credential: mls.Credential{Type: mls.CredentialBasic, Identity: identity},
		Capabilities: mls.Capabilities{
			Versions:     []mls.ProtocolVersion{mls.MLS10},
			CipherSuites: []mls.CipherSuite{mls.CipherSuite(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)},
			Extensions:   []mls.ExtensionType{mls.ExtLastResort},
			Credentials:  []mls.CredentialType{mls.CredentialBasic},
		},
		Lifetime:   mls.Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(80 * 24 * time.Hour).Unix())},
		Extensions: exts,
	})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := mls.Marshal(kp)
	if err != nil {
		t.Fatal(err)
	}
	r, err := suite.KeyPackageRef(bare)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(bare), hex.EncodeToString(r)
}

// legacyTwin is a kind 443 carrying the KeyPackage of kp (a 30443 from
// slotEvent): its twin, as clients in the 443 → 30443 transition publish
// it. hexContent writes the content in hex with no encoding tag (legacy
// NIP-EE), otherwise base64 with an encoding tag.
func (a author) legacyTwin(t testing.TB, kp nostr.Event, hexContent bool, created nostr.Timestamp) nostr.Event {
	t.Helper()
	if !hexContent {
		return a.sign(t, 443, kp.Content, nostr.Tags{{"encoding", "base64"}, {"mls_ciphersuite", "0x0001"}}, created)
	}
	raw, err := base64.StdEncoding.DecodeString(kp.Content)
	if err != nil {
		t.Fatal(err)
	}
	return a.sign(t, 443, hex.EncodeToString(raw), nostr.Tags{{"ciphersuite", "0x0001"}}, created)
}

// slotEvent is a kind 30443 in slot d carrying a fresh KeyPackage.
func (a author) slotEvent(t testing.TB, d string, created nostr.Timestamp) nostr.Event {
	t.Helper()
	content, ref := a.keyPackage(t, true)
	return a.sign(t, 30443, content, nostr.Tags{{"d", d}, {"i", ref}, {"mls_ciphersuite", "0x0001"}, {"encoding", "base64"}}, created)
}

func slotID(n int) string { return strings.Repeat(string(rune('a'+n)), 64) }

// liveRelay is a relay started in-process with a connected client.
type liveRelay struct {
	ws, http string
	client   *wsClient
}

// startLive starts a relay on backend ("sqlite" or "postgres") with extra
// flags.
func startLive(t *testing.T, backend string, args ...string) liveRelay {
	t.Helper()
	base := []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}
	if backend == "postgres" {
		base = append(base, "--database-url", testsvc.Postgres(t).URL)
	}
	c, err := parseServeConfig(append(base, args...), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	url := startInProcess(t, c)
	client, err := dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return liveRelay{ws: url, http: "http" + strings.TrimPrefix(url, "ws"), client: client}
}

func (r liveRelay) mustPublish(t *testing.T, ev nostr.Event) {
	t.Helper()
	if ok, msg, err := r.client.publish(ev, testTimeout); err != nil || !ok {
		t.Fatalf("publishing kind %d: ok=%v %q %v", ev.Kind, ok, msg, err)
	}
}

func (r liveRelay) ids(t *testing.T, f nostr.Filter) []string {
	t.Helper()
	evs, err := r.client.query(f, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	slices.Sort(out)
	return out
}

// manage calls a NIP-86 method signed NIP-98 style by a.
func (r liveRelay) manage(t *testing.T, a author, method string, params ...any) nip86.Response {
	t.Helper()
	body, _ := json.Marshal(nip86.Request{Method: method, Params: append([]any{}, params...)})
	sum := sha256.Sum256(body)
	auth := a.sign(t, 27235, "", nostr.Tags{{"u", r.http}, {"method", "POST"}, {"payload", hex.EncodeToString(sum[:])}}, 0)
	aj, _ := json.Marshal(auth)
	req, _ := http.NewRequest(http.MethodPost, r.http, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/nostr+json+rpc")
	req.Header.Set("Authorization", "Nostr "+base64.StdEncoding.EncodeToString(aj))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out nip86.Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKeyPackageSlotCap(t *testing.T) {
	for _, b := range liveBackends {
		t.Run(b, func(t *testing.T) { testKeyPackageSlotCap(t, b) })
	}
}

func testKeyPackageSlotCap(t *testing.T, backend string) {
	old := nostr.Now() - 600 // ten minutes ago
	tests := []struct {
		name     string
		evictAge string
		created  nostr.Timestamp // of the slots already held
		wantOK   bool
		wantMsg  string
		wantGone int // index of the evicted slot, -1 for none
	}{
		{"no slot old enough: the new one is refused", "168h", old, false, "blocked: too many KeyPackage slots", -1},
		{"the least recently refreshed slot is evicted", "5m", old, true, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startLive(t, backend, "--keypackage-slot-cap", "2", "--keypackage-evict-age", tt.evictAge)
			a := newAuthor(t)
			held := []nostr.Event{a.slotEvent(t, slotID(0), tt.created), a.slotEvent(t, slotID(1), tt.created+1)}
			for _, ev := range held {
				r.mustPublish(t, ev)
			}
			// Refreshing a held slot never counts against the cap.
			refreshed := a.slotEvent(t, slotID(1), tt.created+2)
			r.mustPublish(t, refreshed)
			held[1] = refreshed

			third := a.slotEvent(t, slotID(2), 0)
			ok, msg, err := r.client.publish(third, testTimeout)
			if err != nil || ok != tt.wantOK || msg != tt.wantMsg {
				t.Fatalf("third slot: ok=%v %q %v, want %v %q", ok, msg, err, tt.wantOK, tt.wantMsg)
			}
			var want []string
			for i, ev := range held {
				if i != tt.wantGone {
					want = append(want, ev.ID)
				}
			}
			if tt.wantOK {
				want = append(want, third.ID)
			}
			slices.Sort(want)
			if got := r.ids(t, nostr.Filter{Authors: []string{a.pk}, Kinds: []int{30443}}); !slices.Equal(got, want) {
				t.Fatalf("stored slots %v, want %v", got, want)
			}
		})
	}
}

func TestBanPubKeyRemovesAndRefuses(t *testing.T) {
	for _, b := range liveBackends {
		t.Run(b, func(t *testing.T) { testBanPubKeyRemovesAndRefuses(t, b) })
	}
}

func testBanPubKeyRemovesAndRefuses(t *testing.T, backend string) {
	admin, a, other := newAuthor(t), newAuthor(t), newAuthor(t)
	r := startLive(t, backend, "--admin", admin.pk)
	kp := a.slotEvent(t, slotID(0), 0)
	note := a.sign(t, 1, "hello", nil, 0)
	bystander := other.sign(t, 1, "still here", nil, 0)
	for _, ev := range []nostr.Event{kp, note, bystander} {
		r.mustPublish(t, ev)
	}
	if resp := r.manage(t, other, "banpubkey", a.pk, "spam"); resp.Error == "" {
		t.Fatal("a non-admin banned a pubkey")
	}
	if resp := r.manage(t, admin, "banpubkey", a.pk, "spam"); resp.Error != "" {
		t.Fatalf("banpubkey: %s", resp.Error)
	}
	if got := r.ids(t, nostr.Filter{Authors: []string{a.pk}}); len(got) != 0 {
		t.Fatalf("banned author's events still served: %v", got)
	}
	if got := r.ids(t, nostr.Filter{IDs: []string{bystander.ID}}); len(got) != 1 {
		t.Fatal("a bystander's event was removed")
	}
	for _, ev := range []nostr.Event{a.sign(t, 1, "back", nil, 0), a.slotEvent(t, slotID(1), 0)} {
		if ok, msg, err := r.client.publish(ev, testTimeout); err != nil || ok || msg != "blocked: banned" {
			t.Fatalf("banned author's kind %d: ok=%v %q %v, want blocked: banned", ev.Kind, ok, msg, err)
		}
	}
	resp := r.manage(t, admin, "listbannedpubkeys")
	if b, _ := json.Marshal(resp.Result); resp.Error != "" || !strings.Contains(string(b), a.pk) {
		t.Fatalf("listbannedpubkeys = %s %q", b, resp.Error)
	}
	metrics := httpGet(t, r.http+"/metrics")
	for _, want := range []string{`burrow_events_deleted_total{kind="30443",reason="banned"} 1`, `burrow_events_deleted_total{kind="1",reason="banned"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, grepLines(metrics, "burrow_events_deleted"))
		}
	}
}

func TestRequestToVanish(t *testing.T) {
	for _, b := range liveBackends {
		t.Run(b, func(t *testing.T) { testRequestToVanish(t, b) })
	}
}

func testRequestToVanish(t *testing.T, backend string) {
	const needsServiceURL = "blocked: this relay honours a request to vanish that names a relay only when its operator has set its service URL (--service-url); send one addressed to ALL_RELAYS"
	tests := []struct {
		name  string
		flags []string
		relay string
		// refusal is the answer to a request naming another relay (and,
		// without --service-url, to one naming the URL dialled).
		refusal string
	}{
		{"ALL_RELAYS", []string{"--service-url", "wss://burrow.example"}, "ALL_RELAYS", "invalid: request to vanish names another relay"},
		{"this relay's service URL", []string{"--service-url", "wss://burrow.example"}, "wss://burrow.example/", "invalid: request to vanish names another relay"},
		{"ALL_RELAYS without --service-url", nil, "ALL_RELAYS", needsServiceURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startLive(t, backend, tt.flags...)
			a, friend, stranger := newAuthor(t), newAuthor(t), newAuthor(t)
			kp := a.slotEvent(t, slotID(0), 0)
			note := a.sign(t, 1, "hello", nil, 0)
			wrapToA := stranger.sign(t, 1059, "sealed", nostr.Tags{{"p", a.pk}}, 0)
			friendNote := friend.sign(t, 1, "mine", nil, 0)
			wrapToFriend := stranger.sign(t, 1059, "sealed", nostr.Tags{{"p", friend.pk}}, 0)
			for _, ev := range []nostr.Event{kp, note, wrapToA, friendNote, wrapToFriend} {
				r.mustPublish(t, ev)
			}
			// Gift wraps are served only to their recipient: each looks
			// for its own.
			name := r.ws
			if tt.flags != nil {
				name = tt.flags[1] // AUTH names the --service-url
			}
			asA, asFriend := authedClientNaming(t, r.ws, name, a), authedClientNaming(t, r.ws, name, friend)
			stored := func() []string {
				t.Helper()
				ids := r.ids(t, nostr.Filter{IDs: []string{kp.ID, note.ID, friendNote.ID}})
				for _, q := range []struct {
					c  *wsClient
					id string
				}{{asA, wrapToA.ID}, {asFriend, wrapToFriend.ID}} {
					evs, err := q.c.query(nostr.Filter{IDs: []string{q.id}}, testTimeout)
					if err != nil {
						t.Fatal(err)
					}
					for _, ev := range evs {
						ids = append(ids, ev.ID)
					}
				}
				slices.Sort(ids)
				return ids
			}
			if got := stored(); len(got) != 5 {
				t.Fatalf("before any request %d of 5 are served", len(got))
			}

			refused := []string{"wss://elsewhere.example"}
			if tt.flags == nil {
				refused = append(refused, r.ws) // the Host decides nothing
			}
			for _, relay := range refused {
				req := a.sign(t, 62, "", nostr.Tags{{"relay", relay}}, 0)
				if ok, msg, err := r.client.publish(req, testTimeout); err != nil || ok || msg != tt.refusal {
					t.Fatalf("vanish naming %s: ok=%v %q %v", relay, ok, msg, err)
				}
			}
			if got := stored(); len(got) != 5 {
				t.Fatalf("a refused request deleted events: %d left of 5", len(got))
			}

			r.mustPublish(t, a.sign(t, 62, "", nostr.Tags{{"relay", tt.relay}}, 0))
			want := []string{friendNote.ID, wrapToFriend.ID}
			slices.Sort(want)
			if got := stored(); !slices.Equal(got, want) {
				t.Fatalf("after vanish %v remain, want only %v", got, want)
			}
			// An old event of the author cannot come back.
			if ok, msg, err := r.client.publish(note, testTimeout); err != nil || ok || !strings.HasPrefix(msg, "blocked:") {
				t.Fatalf("re-publishing a vanished event: ok=%v %q %v", ok, msg, err)
			}
		})
	}
}

func TestGiftWrapDeletedByItsRecipient(t *testing.T) {
	for _, b := range liveBackends {
		t.Run(b, func(t *testing.T) { testGiftWrapDeletedByItsRecipient(t, b) })
	}
}

func testGiftWrapDeletedByItsRecipient(t *testing.T, backend string) {
	r := startLive(t, backend)
	recipient, sender, bystander := newAuthor(t), newAuthor(t), newAuthor(t)
	wrap := sender.sign(t, 1059, "sealed", nostr.Tags{{"p", recipient.pk}}, 0)
	r.mustPublish(t, wrap)

	// Only the recipient is served the wrap (NIP-42).
	asRecipient := authedClient(t, r.ws, recipient)
	served := func() int {
		t.Helper()
		evs, err := asRecipient.query(nostr.Filter{IDs: []string{wrap.ID}}, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	if served() != 1 {
		t.Fatal("the recipient is not served the wrap")
	}
	notMine := bystander.sign(t, 5, "", nostr.Tags{{"e", wrap.ID}, {"k", "1059"}}, 0)
	if ok, msg, err := r.client.publish(notMine, testTimeout); err != nil || ok || !strings.HasPrefix(msg, "blocked:") {
		t.Fatalf("a stranger's kind 5 for the wrap: ok=%v %q %v, want blocked:", ok, msg, err)
	}
	if served() != 1 {
		t.Fatal("a stranger deleted the wrap")
	}
	r.mustPublish(t, recipient.sign(t, 5, "", nostr.Tags{{"e", wrap.ID}, {"k", "1059"}}, 0))
	if served() != 0 {
		t.Fatal("the recipient's kind 5 left the wrap stored")
	}
}

func TestKeyPackageSupplyAndNIP11(t *testing.T) {
	for _, b := range liveBackends {
		t.Run(b, func(t *testing.T) { testKeyPackageSupplyAndNIP11(t, b) })
	}
}

func testKeyPackageSupplyAndNIP11(t *testing.T, backend string) {
	r := startLive(t, backend, "--keypackage-slot-cap", "4", "--keypackage-evict-age", "24h")
	a := newAuthor(t)
	legacyContent, _ := a.keyPackage(t, false)
	events := []nostr.Event{
		a.slotEvent(t, slotID(0), nostr.Now()-20),
		a.slotEvent(t, slotID(1), nostr.Now()-10),
		a.sign(t, 443, legacyContent, nostr.Tags{{"encoding", "base64"}, {"mls_ciphersuite", "0x0001"}}, nostr.Now()-5),
		a.sign(t, 1, "not a KeyPackage", nil, 0),
	}
	for _, ev := range events {
		r.mustPublish(t, ev)
	}
	var sup map[string]any
	if err := json.Unmarshal([]byte(httpGet(t, r.http+"/keypackages/supply?pubkey="+a.pk)), &sup); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"pubkey": a.pk, "keypackages": float64(3), "slots": float64(2), "legacy": float64(1),
		"last_resort": float64(2), "distinct": float64(3), "newest_created_at": float64(events[2].CreatedAt)}
	for k, v := range want {
		if sup[k] != v {
			t.Errorf("supply %s = %v, want %v", k, sup[k], v)
		}
	}
	if _, ok := sup["content"]; ok || len(sup) != len(want) {
		t.Fatalf("supply has fields beyond the counts: %v", sup)
	}

	var doc struct {
		SupportedNIPs []int          `json:"supported_nips"`
		KeyPackages   map[string]any `json:"keypackages"`
	}
	fetchNIP11(t, r.http, &doc)
	kp := doc.KeyPackages
	if kp["validated"] != true || kp["slot_cap"] != float64(4) || kp["evict_after_seconds"] != float64(86400) ||
		kp["supply_endpoint"] != "/keypackages/supply" {
		t.Fatalf("NIP-11 keypackages = %v", kp)
	}
	for _, n := range []int{9, 62, 86} {
		if !slices.Contains(doc.SupportedNIPs, n) {
			t.Errorf("supported_nips %v lacks %d", doc.SupportedNIPs, n)
		}
	}
}
