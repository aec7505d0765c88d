package marmot

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// twoMembers is alice's group with bob joined.
func twoMembers(tb testing.TB) (alice, bob *member) {
	tb.Helper()
	alice, bob = newMember(tb, "alice"), newMember(tb, "bob")
	var err error
	if alice.g, err = CreateGroup(alice.acct, NewGroupParams{Relays: []string{"wss://relay.example"}}, GroupOptions{}); err != nil {
		tb.Fatal(err)
	}
	o, err := alice.g.Invite(bob.kpEvent)
	if err != nil {
		tb.Fatal(err)
	}
	publish(tb, alice, o, bob)
	return alice, bob
}

// BenchmarkGroupEvent measures a kind 445 application message, built by
// one member and opened by another, per operation:
//   - MLS: the baseline, the MLS application message alone;
//   - Layer: Marmot's own part (payload JSON, the 445 AEAD), no MLS;
//   - Content: what Marmot adds to the transport around MLS, the MLS
//     application message (Protect, Unprotect) inside the exporter-keyed
//     ChaCha20-Poly1305 content (seal, open), plus the app payload's JSON;
//   - Event: the whole event, adding the fresh secp256k1 key, the BIP-340
//     signature and its verification (which a relay also does).
func BenchmarkGroupEvent(b *testing.B) {
	alice, bob := twoMembers(b)
	text := strings.Repeat("x", 100)
	b.Run("MLS", func(b *testing.B) {
		// The baseline: the MLS application message alone (Protect on the
		// sender, Unprotect on the receiver) with the same payload.
		payload, _ := NewAppEvent(alice.acct.PublicKey(), KindChat, nil, text, 1700000000).Marshal()
		b.ReportAllocs()
		for b.Loop() {
			msg, err := alice.g.MLS().Protect(payload, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := bob.g.MLS().Unprotect(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Layer", func(b *testing.B) {
		// Marmot's own part of Content, without MLS: the app payload's JSON
		// (built, then parsed strictly) and the 445 AEAD (seal, open).
		msg, err := alice.g.MLS().Protect([]byte(text), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			payload, err := NewAppEvent(alice.acct.PublicKey(), KindChat, nil, text, 1700000000).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			content, err := SealGroupContent(alice.g.tip.key, msg, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := OpenGroupContent(bob.g.tip.key, content); err != nil {
				b.Fatal(err)
			}
			if _, err := ParseAppEvent(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Content", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			payload, err := NewAppEvent(alice.acct.PublicKey(), KindChat, nil, text, 1700000000).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			msg, err := alice.g.MLS().Protect(payload, nil)
			if err != nil {
				b.Fatal(err)
			}
			content, err := SealGroupContent(alice.g.tip.key, msg, nil)
			if err != nil {
				b.Fatal(err)
			}
			opened, err := OpenGroupContent(bob.g.tip.key, content)
			if err != nil {
				b.Fatal(err)
			}
			pt, err := bob.g.MLS().Unprotect(opened)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ParseAppEvent(pt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Event", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ev, err := alice.g.SendChat(text)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := bob.g.Receive(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// growGroup makes a group of n members: the creator and n-1 invitees added
// in one commit, the tree in every Welcome as the profile requires.
func growGroup(tb testing.TB, n int) (*member, *Outgoing) {
	tb.Helper()
	alice := newMember(tb, "alice")
	var err error
	if alice.g, err = CreateGroup(alice.acct, NewGroupParams{Relays: []string{"wss://relay.example"}}, GroupOptions{}); err != nil {
		tb.Fatal(err)
	}
	var kps []*nostr.Event
	for range n - 1 {
		kps = append(kps, newMember(tb, "m").kpEvent)
	}
	o, err := alice.g.Invite(kps...)
	if err != nil {
		tb.Fatal(err)
	}
	return alice, o
}

// BenchmarkWelcomeGiftWrap measures building one invitee's Welcome gift
// wrap (kind 444 rumor, kind 13 seal, kind 1059 wrap) for groups of the
// given sizes. Sizes whose Welcome does not fit NIP-44's 65,535-byte
// plaintext limit are measured up to the refusal (TestWelcomeSizeLimit
// checks the refusal).
func BenchmarkWelcomeGiftWrap(b *testing.B) {
	for _, n := range []int{10, 50, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			alice, o := growGroup(b, n)
			w := o.Welcomes[0]
			b.ReportMetric(float64(len(w.Rumor.Content)*3/4), "welcome-B")
			b.ResetTimer()
			for b.Loop() {
				_, err := WrapWelcome(alice.acct, w.Rumor, w.Invitee, WrapOptions{})
				if err != nil && !errors.Is(err, ErrWelcome) {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWelcomeSizeLimit: a Welcome too large for a NIP-44 layer is refused
// with a clear ErrWelcome naming the size, never wrapped silently wrong;
// the largest group here whose Welcome still fits is found and stated.
func TestWelcomeSizeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds groups of up to 100 members")
	}
	alice, o := growGroup(t, 100)
	w := o.Welcomes[0]
	_, err := WrapWelcome(alice.acct, w.Rumor, w.Invitee, WrapOptions{})
	if !errors.Is(err, ErrWelcome) || !strings.Contains(err.Error(), "-byte rumor") {
		t.Fatalf("100-member Welcome: err = %v, want ErrWelcome with the size", err)
	}
	alice, o = growGroup(t, 40)
	w = o.Welcomes[0]
	if _, err := WrapWelcome(alice.acct, w.Rumor, w.Invitee, WrapOptions{}); err != nil {
		t.Fatalf("40-member Welcome: %v", err)
	}
}
