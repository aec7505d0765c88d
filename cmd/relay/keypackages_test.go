package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
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
