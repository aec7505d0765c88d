package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/interop"
	"github.com/nbd-wtf/go-nostr"
)

// TestKeyPackagesAreValidatedOnIngest checks the relay wiring: KeyPackage
// events go through keypackages.Validator before storage (the validator's
// own cases are in package keypackages).
func TestKeyPackagesAreValidatedOnIngest(t *testing.T) {
	fx := longLivedFixture(t)
	c := testConfig(t)
	c.DataDir = t.TempDir()
	client, err := dial(context.Background(), startInProcess(t, c))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sk := hex.EncodeToString(fx.NostrSecretKey)
	content := base64.StdEncoding.EncodeToString(fx.KeyPackage)

	tests := []struct {
		name   string
		kind   int
		tags   nostr.Tags
		body   string
		ok     bool
		prefix string
	}{
		{"a legacy 443 with a real KeyPackage is stored", 443,
			nostr.Tags{{"encoding", "base64"}, {"mls_protocol_version", "1.0"}, {"mls_ciphersuite", "0x0001"}}, content, true, ""},
		{"garbage content is refused as invalid", 30443,
			nostr.Tags{{"d", strings.Repeat("a", 64)}, {"i", hex.EncodeToString(fx.KeyPackageRef)}, {"mls_ciphersuite", "0x0001"}},
			base64.StdEncoding.EncodeToString([]byte("not a key package")), false, "invalid:"},
		{"a current-profile event over the lifetime cap is refused", 30443,
			nostr.Tags{{"d", strings.Repeat("b", 64)}, {"i", hex.EncodeToString(fx.KeyPackageRef)},
				{"mls_ciphersuite", "0x0001"}, {"app_components", "0xf2ee"}}, content, false, "invalid:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := nostr.Event{Kind: tt.kind, CreatedAt: nostr.Now(), Tags: tt.tags, Content: tt.body}
			if err := ev.Sign(sk); err != nil {
				t.Fatal(err)
			}
			ok, msg, err := client.publish(ev, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || !strings.HasPrefix(msg, tt.prefix) {
				t.Fatalf("OK %v %q, want %v with prefix %q", ok, msg, tt.ok, tt.prefix)
			}
			stored, err := client.query(nostr.Filter{IDs: []string{ev.ID}}, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if (len(stored) == 1) != tt.ok {
				t.Fatalf("stored %d events, want stored=%v", len(stored), tt.ok)
			}
		})
	}
}

// TestKeyPackageDeletionIsCheckpointedAndCounted checks the wiring of the
// embedded store's scrub: deleting a KeyPackage triggers a WAL checkpoint
// whose outcome shows on /metrics (the scrub itself is tested in
// storage/sqlite).
func TestKeyPackageDeletionIsCheckpointedAndCounted(t *testing.T) {
	fx := longLivedFixture(t)
	c := testConfig(t)
	c.DataDir = t.TempDir()
	url := startInProcess(t, c)
	client, err := dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sk := hex.EncodeToString(fx.NostrSecretKey)
	kp := nostr.Event{Kind: 443, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"encoding", "base64"}, {"mls_ciphersuite", "0x0001"}},
		Content: base64.StdEncoding.EncodeToString(fx.KeyPackage)}
	del := nostr.Event{Kind: 5, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"e", ""}, {"k", "443"}}}
	if err := kp.Sign(sk); err != nil {
		t.Fatal(err)
	}
	del.Tags[0][1] = kp.ID
	if err := del.Sign(sk); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []nostr.Event{kp, del} {
		if ok, msg, err := client.publish(ev, 10*time.Second); err != nil || !ok {
			t.Fatalf("publishing kind %d: ok=%v %q %v", ev.Kind, ok, msg, err)
		}
	}
	metricsURL := "http" + strings.TrimPrefix(url, "ws") + "/metrics"
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := httpGet(t, metricsURL)
		if strings.Contains(body, `burrow_wal_checkpoints_total{outcome="ok"} 1`) &&
			strings.Contains(body, `burrow_events_deleted_total{kind="443",reason="deletion_request"} 1`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint or deletion counted within 5 s:\n%s", grepLines(body, "burrow_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// longLivedFixture is an independent implementation's KeyPackage with a
// 10-year lifetime, so tests using it do not depend on today's date.
func longLivedFixture(t *testing.T) *interop.KeyPackageFixture {
	t.Helper()
	fixtures, err := interop.LoadKeyPackageFixtures(interop.FixturesDir())
	if err != nil {
		t.Fatal(err)
	}
	for i := range fixtures {
		if fixtures[i].Lifetime == "10y" {
			return &fixtures[i]
		}
	}
	t.Fatal("no 10-year KeyPackage fixture in interop/fixtures")
	return nil
}

// TestKeyPackageTwinsAndResends runs, on both backends, what a client in
// the 443 → 30443 transition does: it publishes one KeyPackage as a 30443
// and as a 443 (hex content here, base64 there: the same KeyPackage), finds
// both served, re-sends its current KeyPackage (answered OK true with
// "duplicate:"), then deletes the used 30443 with a kind 5. Both twins are
// gone, and re-sending either, or a new event carrying that KeyPackage, is
// refused with "blocked: deleted". A marmot-ts-shaped 30443 (free-form d,
// bare KeyPackage, encoding and relays tags, no mls_proposals) is accepted.
func TestKeyPackageTwinsAndResends(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			r := startLive(t, backend)
			au := newAuthor(t)
			kp := au.slotEvent(t, slotID(0), nostr.Now()-10)
			legacy := au.legacyTwin(t, kp, true, nostr.Now()-10)
			publish := func(ev nostr.Event) (bool, string) {
				t.Helper()
				ok, msg, err := r.client.publish(ev, testTimeout)
				if err != nil {
					t.Fatal(err)
				}
				return ok, msg
			}
			for _, ev := range []nostr.Event{legacy, kp} {
				if ok, msg := publish(ev); !ok {
					t.Fatalf("publishing the kind %d twin: %q", ev.Kind, msg)
				}
			}
			if got := r.ids(t, nostr.Filter{Authors: []string{au.pk}}); !slices.Equal(got, sortedIDs(kp.ID, legacy.ID)) {
				t.Fatalf("served %v, want both twins", got)
			}
			for _, ev := range []nostr.Event{kp, legacy} {
				if ok, msg := publish(ev); !ok || !strings.HasPrefix(msg, "duplicate:") {
					t.Fatalf("re-sending the stored kind %d = %v %q, want OK true duplicate:", ev.Kind, ok, msg)
				}
			}
			r.mustPublish(t, au.sign(t, 5, "", nostr.Tags{{"e", kp.ID}, {"k", "30443"}}, 0))
			if got := r.ids(t, nostr.Filter{Authors: []string{au.pk}, Kinds: []int{443, 30443}}); len(got) != 0 {
				t.Fatalf("after deleting the 30443, still served: %v", got)
			}
			for _, ev := range []nostr.Event{kp, legacy, au.legacyTwin(t, kp, false, 0)} {
				if ok, msg := publish(ev); ok || msg != "blocked: deleted" {
					t.Fatalf("re-sending a kind %d of the deleted KeyPackage = %v %q, want blocked: deleted", ev.Kind, ok, msg)
				}
			}

			content, ref := au.keyPackage(t, false)
			raw, _ := base64.StdEncoding.DecodeString(content)
			marmotTS := au.sign(t, 30443, base64.StdEncoding.EncodeToString(raw), nostr.Tags{
				{"d", "test-invitee-device"}, {"mls_protocol_version", "1.0"}, {"mls_ciphersuite", "0x0001"},
				{"mls_extensions", "0xf2ee", "0x000a"}, {"encoding", "base64"}, {"i", ref}, {"client", "marmot-ts"},
				{"relays", "wss://relay.example"}}, 0)
			if ok, msg := publish(marmotTS); !ok {
				t.Fatalf("a marmot-ts 30443 was refused: %q", msg)
			}
		})
	}
}

func sortedIDs(ids ...string) []string { slices.Sort(ids); return ids }
