package marmot

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
)

// TestKeyPackageEventShape checks what NewKeyPackage and Event produce: the
// current profile's tag set in order, content = base64 of an MLSMessage
// framing the KeyPackage, the account as credential, the last-resort
// component, a lifetime of 84 days + 1 h, and an event that
// ValidateKeyPackageEvent and ParseKeyPackageEvent accept.
func TestKeyPackageEventShape(t *testing.T) {
	acct := mustAccount(t)
	now := time.Unix(1_800_000_000, 0)
	b, err := NewKeyPackage(acct, KeyPackageOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	slot := NewSlot()
	ev, err := b.Event(acct, slot, now)
	if err != nil {
		t.Fatal(err)
	}
	wantTags := nostr.Tags{
		{"d", slot},
		{"mls_protocol_version", "1.0"},
		{"i", hex.EncodeToString(b.Ref)},
		{"mls_ciphersuite", "0x0001"},
		{"mls_extensions", "0x0006"},
		{"mls_proposals", "0x0008", "0x000a"},
		{"app_components", "0x0001", "0x8001", "0x8003", "0x8004", "0x8009"},
	}
	if !tagsEqual(ev.Tags, wantTags) {
		t.Fatalf("tags %v\nwant %v", ev.Tags, wantTags)
	}
	if ev.Kind != 30443 || ev.PubKey != acct.PublicKey().Hex() {
		t.Fatalf("kind %d pubkey %s", ev.Kind, ev.PubKey)
	}
	if raw, err := base64.StdEncoding.DecodeString(ev.Content); err != nil || !bytes.Equal(raw, b.Message) || !bytes.Equal(raw[:4], []byte{0, 1, 0, 5}) {
		t.Fatalf("content is not base64 of the MLSMessage (%v)", err)
	}
	lt := b.KeyPackage.LeafNode.Lifetime
	if lt.NotAfter-lt.NotBefore != uint64(MaxKeyPackageLifetime/time.Second) || lt.NotBefore != uint64(now.Unix())-3600 {
		t.Fatalf("lifetime %+v", lt)
	}
	for _, at := range []time.Time{now, now.Add(-time.Hour), now.Add(84 * 24 * time.Hour)} {
		kp, err := ValidateKeyPackageEvent(ev, at)
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		if !kp.LastResort || !kp.Framed || !kp.CurrentProfile || kp.Slot != slot || kp.Ref != hex.EncodeToString(b.Ref) || kp.Author != acct.PublicKey() {
			t.Fatalf("parsed %+v", kp)
		}
	}
	if _, err := ValidateKeyPackageEvent(ev, now.Add(84*24*time.Hour+time.Second)); !errors.Is(err, ErrKeyPackageLifetime) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := ValidateKeyPackageEvent(ev, now.Add(-time.Hour-time.Second)); !errors.Is(err, ErrKeyPackageLifetime) {
		t.Fatalf("not yet valid: %v", err)
	}
	nl, err := NewKeyPackage(acct, KeyPackageOptions{NotLastResort: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	nev, _ := nl.Event(acct, slot, now)
	if kp, err := ValidateKeyPackageEvent(nev, now); err != nil || kp.LastResort {
		t.Fatalf("not last resort: %+v %v", kp, err)
	}
}

// resign re-signs ev after edit.
func resign(t *testing.T, acct Signer, ev *nostr.Event, edit func(*nostr.Event)) *nostr.Event {
	t.Helper()
	c := *ev
	c.Tags = slices.Clone(ev.Tags)
	for i := range c.Tags {
		c.Tags[i] = slices.Clone(c.Tags[i])
	}
	edit(&c)
	if err := acct.SignEvent(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func setTag(name string, tag nostr.Tag) func(*nostr.Event) {
	return func(ev *nostr.Event) {
		var out nostr.Tags
		for _, t := range ev.Tags {
			if t[0] != name {
				out = append(out, t)
			} else if tag != nil {
				out = append(out, tag)
			}
		}
		ev.Tags = out
	}
}

func TestValidateKeyPackageEventProfile(t *testing.T) {
	acct := mustAccount(t)
	now := time.Now()
	b, err := NewKeyPackage(acct, KeyPackageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := b.Event(acct, NewSlot(), now)
	if err != nil {
		t.Fatal(err)
	}
	bareB64 := func() string {
		raw, _ := b.KeyPackage.Bytes()
		return base64.StdEncoding.EncodeToString(raw)
	}()
	longLived, err := NewKeyPackage(acct, KeyPackageOptions{Lifetime: MaxKeyPackageLifetime})
	if err != nil {
		t.Fatal(err)
	}
	longEv, _ := longLived.Event(acct, NewSlot(), now)
	noProof := func() *nostr.Event {
		// A KeyPackage from the engine alone: right tags, no identity proof.
		c := *b
		kp := *b.KeyPackage
		kp.LeafNode.Extensions = nil
		kp.LeafNode.Capabilities.Extensions = nil
		if err := kp.Sign(mustSuite(t), b.SignatureKey); err != nil {
			t.Fatal(err)
		}
		c.KeyPackage = &kp
		c.Message, _ = mls.Marshal(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: &kp})
		raw, _ := kp.Bytes()
		c.Ref, _ = mustSuite(t).KeyPackageRef(raw)
		e, err := c.Event(acct, NewSlot(), now)
		if err != nil {
			t.Fatal(err)
		}
		return resign(t, acct, e, setTag("mls_extensions", nostr.Tag{"mls_extensions", "0x0006"}))
	}()
	cases := []struct {
		name string
		ev   *nostr.Event
		want error
	}{
		{"as built", ev, nil},
		{"legacy kind 443", resign(t, acct, ev, func(e *nostr.Event) {
			e.Kind = 443
			setTag("d", nil)(e)
			e.Tags = append(e.Tags, nostr.Tag{"encoding", "base64"})
		}), ErrKeyPackageProfile},
		{"d not hex", resign(t, acct, ev, setTag("d", nostr.Tag{"d", "device-1"})), ErrKeyPackageSlot},
		{"d uppercase", resign(t, acct, ev, setTag("d", nostr.Tag{"d", strings.ToUpper(NewSlot())})), ErrKeyPackageSlot},
		{"encoding tag", resign(t, acct, ev, func(e *nostr.Event) { e.Tags = append(e.Tags, nostr.Tag{"encoding", "base64"}) }), ErrKeyPackageProfile},
		{"no mls_protocol_version", resign(t, acct, ev, setTag("mls_protocol_version", nil)), ErrKeyPackageProfile},
		{"mls_protocol_version 2.0", resign(t, acct, ev, setTag("mls_protocol_version", nostr.Tag{"mls_protocol_version", "2.0"})), ErrKeyPackageProfile},
		{"mls_protocol_version two values", resign(t, acct, ev, setTag("mls_protocol_version", nostr.Tag{"mls_protocol_version", "1.0", "1.0"})), ErrKeyPackageProfile},
		{"no mls_proposals", resign(t, acct, ev, setTag("mls_proposals", nil)), ErrKeyPackageProfile},
		{"empty mls_extensions", resign(t, acct, ev, setTag("mls_extensions", nostr.Tag{"mls_extensions"})), ErrKeyPackageProfile},
		{"id-list in uppercase", resign(t, acct, ev, setTag("mls_proposals", nostr.Tag{"mls_proposals", "0x000A"})), ErrKeyPackageProfile},
		{"id-list without 0x", resign(t, acct, ev, setTag("mls_proposals", nostr.Tag{"mls_proposals", "000a"})), ErrKeyPackageProfile},
		{"id-list repeat", resign(t, acct, ev, setTag("app_components", nostr.Tag{"app_components", "0x8009", "0x8009"})), ErrKeyPackageProfile},
		{"app_components split over two tags", resign(t, acct, ev, func(e *nostr.Event) {
			setTag("app_components", nostr.Tag{"app_components", "0x8009"})(e)
			e.Tags = append(e.Tags, nostr.Tag{"app_components", "0x8001"})
		}), ErrKeyPackageProfile},
		{"app_components without 0x8009", resign(t, acct, ev, setTag("app_components", nostr.Tag{"app_components", "0x8001"})), ErrKeyPackageProfile},
		{"decimal ciphersuite", resign(t, acct, ev, setTag("mls_ciphersuite", nostr.Tag{"mls_ciphersuite", "1"})), ErrKeyPackageProfile},
		{"bare KeyPackage", resign(t, acct, ev, func(e *nostr.Event) { e.Content = bareB64 }), ErrKeyPackageProfile},
		{"lifetime over 84 days + 1 h", longEv, ErrKeyPackageLifetime},
		{"no identity proof", noProof, ErrKeyPackageProfile},
		{"wrong i", resign(t, acct, ev, setTag("i", nostr.Tag{"i", strings.Repeat("0", 64)})), ErrKeyPackageRef},
		{"other author", resign(t, mustAccount(t), ev, func(*nostr.Event) {}), ErrKeyPackageIdentity},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ValidateKeyPackageEvent(tc.ev, now)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// The relay's parser (every era) still reads the events the profile
	// refuses for profile reasons.
	for _, ev := range []*nostr.Event{cases[1].ev, cases[4].ev, cases[16].ev, longEv, noProof} {
		if _, err := ParseKeyPackageEvent(ev); err != nil {
			t.Errorf("ParseKeyPackageEvent: %v", err)
		}
	}
}
