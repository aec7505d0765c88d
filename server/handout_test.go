package server

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/keypackages"
	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/policy"
	"github.com/nbd-wtf/go-nostr"
)

// dialAs connects and, when s is non-nil, authenticates as s (NIP-42).
func dialAs(t *testing.T, r *testRelay, s *signer) *wsClient {
	t.Helper()
	c, err := tryDial(r.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cl := &wsClient{t: t, conn: c}
	first := cl.read()
	if label(first) != "AUTH" {
		t.Fatalf("first message %s, want AUTH challenge", joinRaw(first))
	}
	if s != nil {
		cl.send([]any{"AUTH", authEvent(t, *s, str(first[1]), r.url, 22242, 0)})
		if got := cl.readOK(); !got.ok {
			t.Fatalf("AUTH refused: %+v", got)
		}
	}
	return cl
}

// readClosed reads the next message and returns its CLOSED reason.
func (c *wsClient) readClosed(subID string) string {
	c.t.Helper()
	msg := c.read()
	if label(msg) != "CLOSED" || str(msg[1]) != subID {
		c.t.Fatalf("got %s, want CLOSED for %s", joinRaw(msg), subID)
	}
	return str(msg[2])
}

func eventIDs(evs []*nostr.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	slices.Sort(out)
	return out
}

// keyPackageContent is the base64 of a fresh KeyPackage of s (not last
// resort): the hand-out tells KeyPackages apart by their KeyPackageRef.
func keyPackageContent(t *testing.T, s signer) string {
	t.Helper()
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := suite.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	identity, _ := hex.DecodeString(s.pk)
	kp, _, err := mls.NewKeyPackage(suite, sig, mls.KeyPackageParams{Credential: mls.Credential{Type: mls.CredentialBasic, Identity: identity}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := kp.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// TestKeyPackageHandout runs keypackages.Handout through the websocket
// engine. The stored 30443s carry KeyPackages without last resort (last
// resort is covered in package keypackages); they are stored with plain
// Save, so no KeyPackage rule but the hand-out's applies.
func TestKeyPackageHandout(t *testing.T) {
	author, alice, bob := newSigner(t), newSigner(t), newSigner(t)
	seed := func(t *testing.T, r *testRelay) []*nostr.Event {
		var evs []*nostr.Event
		for i, d := range []string{"a", "b"} {
			ev := author.event(t, 30443, keyPackageContent(t, author), nostr.Tags{{"d", d}}, nostr.Now()-nostr.Timestamp(100-i))
			if _, err := r.store.Save(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		return evs // oldest first
	}
	req := func(sub string) []any {
		return []any{"REQ", sub, map[string]any{"kinds": []int{443, 30443}, "authors": []string{author.pk}}}
	}

	t.Run("off by default a REQ returns every KeyPackage", func(t *testing.T) {
		r := startRelay(t, Config{}, newTestStore(t))
		evs := seed(t, r)
		cl := dialAs(t, r, nil)
		cl.send(req("s"))
		if got := eventIDs(cl.collect("s")); !slices.Equal(got, eventIDs(evs)) {
			t.Fatalf("got %v, want all %v", got, eventIDs(evs))
		}
	})

	t.Run("on", func(t *testing.T) {
		h := keypackages.NewHandout(keypackages.HandoutConfig{
			ClaimTTL: 2 * time.Second,
			Limiter:  policy.NewTokenBucket(0, 3, nil),
		})
		r := startRelay(t, Config{ReqHandler: h, ClaimSweeper: h}, newTestStore(t))
		evs := seed(t, r)
		anon, a, b := dialAs(t, r, nil), dialAs(t, r, &alice), dialAs(t, r, &bob)

		anon.send(req("s"))
		if msg := anon.readClosed("s"); !strings.HasPrefix(msg, "auth-required:") {
			t.Fatalf("unauthenticated: CLOSED %q, want auth-required:", msg)
		}
		anon.send([]any{"REQ", "other", map[string]any{"kinds": []int{30443, 1}, "authors": []string{author.pk}}})
		if got := anon.collect("other"); len(got) != 2 {
			t.Fatalf("a REQ that is not a hand-out got %d events, want 2", len(got))
		}

		steps := []struct {
			name string
			cl   *wsClient
			want []string
		}{
			{"alice gets the oldest", a, []string{evs[0].ID}},
			{"alice again gets the same", a, []string{evs[0].ID}},
			{"bob gets the other", b, []string{evs[1].ID}},
			{"bob again gets the same", b, []string{evs[1].ID}},
		}
		for _, s := range steps {
			s.cl.send(req("s"))
			if got := eventIDs(s.cl.collect("s")); !slices.Equal(got, s.want) {
				t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
			}
		}
		// The subscription stays live after EOSE.
		fresh := author.event(t, 30443, keyPackageContent(t, author), nostr.Tags{{"d", "c"}}, 0)
		if got := dialAs(t, r, nil).publish(fresh); !got.ok {
			t.Fatalf("publish: %+v", got)
		}
		for _, cl := range []*wsClient{a, b} {
			if msg := cl.read(); label(msg) != "EVENT" || decodeEvent(t, msg[2]).ID != fresh.ID {
				t.Fatalf("live: got %s, want the new KeyPackage", joinRaw(msg))
			}
		}
		// alice has spent her 3 tokens (the bucket does not refill).
		a.send(req("t"))
		if got := a.collect("t"); len(got) == 0 {
			t.Fatal("alice's third hand-out was empty")
		}
		a.send(req("u"))
		if msg := a.readClosed("u"); !strings.HasPrefix(msg, "rate-limited:") {
			t.Fatalf("fourth hand-out: CLOSED %q, want rate-limited:", msg)
		}

		eventually(t, "claimed KeyPackages deleted", func() bool {
			n, err := r.store.Count(context.Background(), nostr.Filter{IDs: []string{evs[0].ID, evs[1].ID}})
			return err == nil && n == 0
		})
	})
}
