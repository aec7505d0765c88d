package marmot

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// groupEventFor is a well-formed kind 445 for h with opaque content.
func groupEventFor(t *testing.T, h [32]byte) *nostr.Event {
	t.Helper()
	ev := &nostr.Event{Kind: KindGroupEvent, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"h", hex.EncodeToString(h[:])}},
		Content: base64.StdEncoding.EncodeToString(make([]byte, 40))}
	if err := ev.Sign(hex.EncodeToString(make([]byte, 31)) + "03"); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestPublishRelease checks the release claim's wire form
// (docs/commit-slots.md section 3), the OK parsing of
// "seq:<n> released:<id>", and SlotTaken on a refused claim.
func TestPublishRelease(t *testing.T) {
	h := [32]byte{7}
	holder := strings.Repeat("ab", 32)
	slotKey := unhex(t, "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
	relay := &fakeRelay{info: map[string]any{"supported_extensions": []string{ExtCommitSlots}}, on: func(send func(...any), f []json.RawMessage) {
		if label(f) != "EVENT" {
			return
		}
		var claim nostr.Event
		_ = json.Unmarshal(f[1], &claim)
		var inner nostr.Event
		ok, _ := claim.CheckSignature()
		if !ok || claim.Kind != KindCommitClaim || claim.PubKey != "84bf7562262bbd6940085748f3be6afa52ae317155181ece31b66351ccffa4b0" ||
			json.Unmarshal([]byte(claim.Content), &inner) != nil || inner.Kind != KindGroupEvent {
			send("OK", claim.ID, false, "invalid: bad claim")
			return
		}
		hs, rels := claim.Tags.GetAll([]string{"h", ""}), claim.Tags.GetAll([]string{"release", ""})
		switch {
		case len(claim.Tags) == 2 && len(hs) == 1 && len(rels) == 1 && rels[0][1] == holder:
			send("OK", claim.ID, true, "seq:7 released:"+holder)
		case len(claim.Tags) == 1 && len(hs) == 1:
			send("OK", claim.ID, false, "blocked: slot taken by "+holder)
		default:
			send("OK", claim.ID, false, "invalid: tags")
		}
	}}
	ctx := context.Background()
	url := relay.start(t)
	c, err := Dial(ctx, url, ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	commit := groupEventFor(t, h)

	_, err = c.PublishCommit(ctx, commit, slotKey)
	if got, ok := SlotTaken(err); !ok || got != holder {
		t.Fatalf("plain claim: %v; SlotTaken = %q %v", err, got, ok)
	}
	ok, err := c.PublishRelease(ctx, commit, slotKey, holder)
	if err != nil || ok.Seq != 7 || ok.Released != holder {
		t.Fatalf("release: %+v %v", ok, err)
	}
	if _, err := c.PublishRelease(ctx, commit, slotKey, "not-an-id"); !errors.Is(err, ErrRejected) {
		t.Fatalf("a malformed holder id was sent: %v", err)
	}

	for _, e := range []error{nil, errors.New("blocked: slot taken by " + holder),
		&Error{Check: ErrRejected, Reason: "blocked: commit lost slot x to " + holder}, &Error{Check: ErrRejected, Reason: "blocked: slot taken by nothing"}} {
		if got, ok := SlotTaken(e); ok {
			t.Errorf("SlotTaken(%v) = %q", e, got)
		}
	}

	// A relay that does not advertise commit slots never gets a release.
	plain := &fakeRelay{info: map[string]any{}, on: func(send func(...any), f []json.RawMessage) {
		t.Errorf("a %s frame reached a relay without commit slots", label(f))
	}}
	c2, err := Dial(ctx, plain.start(t), ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.PublishRelease(ctx, commit, slotKey, holder); !errors.Is(err, ErrRejected) {
		t.Fatalf("release to a relay without slots: %v", err)
	}
}

// TestClientCountsMalformedFrames: frames that are not NIP-01 messages are
// dropped and counted, so a caller that timed out can say why; Err reports
// a closed connection.
func TestClientCountsMalformedFrames(t *testing.T) {
	relay := &fakeRelay{info: map[string]any{}, on: func(send func(...any), f []json.RawMessage) {
		send("OK")    // too short
		send(42, "x") // label not a string
		send("EVENT") // too short
		send("NOTICE", "fine")
	}}
	ctx := context.Background()
	c, err := Dial(ctx, relay.start(t), ClientOptions{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ev := &nostr.Event{Kind: 1, CreatedAt: nostr.Now()}
	_ = ev.Sign(hex.EncodeToString(make([]byte, 31)) + "04")
	if _, err := c.Publish(ctx, ev); !errors.Is(err, ErrTimeout) {
		t.Fatalf("publish: %v", err)
	}
	if n := c.Malformed(); n != 3 {
		t.Errorf("Malformed() = %d, want 3", n)
	}
	if c.Err() != nil {
		t.Errorf("Err() = %v on an open connection", c.Err())
	}
	c.Close()
	if !errors.Is(c.Err(), ErrRelay) {
		t.Errorf("Err() = %v after Close, want ErrRelay", c.Err())
	}
}

// TestLegacyEventTwin: the 443 form of a bundle has the 30443's content,
// parses, and has the same KeyPackageRef (which is how relays match twins).
func TestLegacyEventTwin(t *testing.T) {
	acct := mustAccount(t)
	b, err := NewKeyPackage(acct, KeyPackageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	current, err := b.Event(acct, NewSlot(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := b.LegacyEvent(acct, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyEvent(legacy); err != nil {
		t.Fatal(err)
	}
	kp, err := ParseKeyPackageEvent(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if legacy.Kind != KindLegacyKeyPackage || legacy.Content != current.Content || kp.Ref != hex.EncodeToString(b.Ref) || kp.Author != acct.PublicKey() {
		t.Fatalf("legacy twin: kind %d, same content %v, ref %s", legacy.Kind, legacy.Content == current.Content, kp.Ref)
	}
}
