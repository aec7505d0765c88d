package marmot

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Every decoder refuses what it cannot read with a typed error (an *Error
// of this package) and never panics; what it accepts re-encodes to the
// same bytes where the format has one encoding.

func isTyped(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

func FuzzComponents(f *testing.F) {
	r, _ := NostrRouting{GroupID: [32]byte{1}, Relays: []string{"wss://a.example"}}.Marshal()
	a, _ := AdminPolicy{Admins: []Pubkey{{1}}}.Marshal()
	p, _ := GroupProfile{Name: "n"}.Marshal()
	for _, s := range [][]byte{r, a, p, (ComponentsList{1, 0x8009}).Marshal(), IdentityProof{CreatedAt: 1}.Marshal(), legacyGroupData(2, []string{"wss://a"}, true, nil)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := ParseNostrRouting(b); err == nil {
			if again, err := v.Marshal(); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("routing does not round-trip")
			}
		} else if !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
		if v, err := ParseAdminPolicy(b); err == nil {
			if again, err := v.Marshal(); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("admin policy does not round-trip")
			}
		} else if !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
		if v, err := ParseGroupProfile(b); err == nil {
			if again, err := v.Marshal(); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("profile does not round-trip")
			}
		} else if !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
		if v, err := ParseComponentsList(b); err == nil {
			if !bytes.Equal(v.Marshal(), b) {
				t.Fatalf("components list does not round-trip")
			}
		} else if !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
		if v, err := ParseIdentityProof(b); err == nil {
			if !bytes.Equal(v.Marshal(), b) {
				t.Fatalf("proof does not round-trip")
			}
		} else if !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
		if _, err := ParseLegacyGroupData(b); err != nil && !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzGroupContent(f *testing.F) {
	key := bytes.Repeat([]byte{3}, 32)
	c, _ := SealGroupContent(key, []byte("message"), nil)
	f.Add(c)
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, content string) {
		msg, err := OpenGroupContent(key, content)
		if err != nil {
			if !errors.Is(err, ErrGroupEvent) && !errors.Is(err, ErrUndecryptable) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(msg)+minGroupEventContent != len(mustDecode(content)) {
			t.Fatal("opened content of the wrong length")
		}
		if _, err := OpenLegacyGroupContent(key, content); err != nil && !errors.Is(err, ErrUndecryptable) {
			t.Fatalf("legacy: %v", err)
		}
	})
}

func mustDecode(s string) []byte {
	b, _ := decodeBase64(s)
	return b
}

func FuzzGroupEventEnvelope(f *testing.F) {
	ev, _ := NewGroupEvent(bytes.Repeat([]byte{1}, 32), [32]byte{2}, []byte("m"), GroupEventOptions{Expiration: time.Unix(2e9, 0)})
	b, _ := json.Marshal(ev)
	f.Add(b)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev nostr.Event
		if json.Unmarshal(raw, &ev) != nil {
			return
		}
		if _, _, err := CheckGroupEvent(&ev); err != nil && !errors.Is(err, ErrGroupEvent) {
			t.Fatalf("untyped error %v", err)
		}
		if _, _, err := OpenGroupEvent(&ev, [][]byte{bytes.Repeat([]byte{1}, 32)}); err != nil && !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzAppEvent(f *testing.F) {
	e := NewAppEvent(Pubkey{1}, KindChat, nostr.Tags{{"t", "x"}}, "hi", 1)
	b, _ := e.Marshal()
	f.Add(b)
	f.Add([]byte(`{"id":"","pubkey":"","created_at":0,"kind":0,"tags":[],"content":"","content":""}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := ParseAppEvent(raw)
		if err != nil {
			if !errors.Is(err, ErrAppEvent) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseAppEvent(again); err != nil || back.ID != e.ID {
			t.Fatalf("accepted payload does not re-parse: %v", err)
		}
	})
}

func FuzzWelcomeRumor(f *testing.F) {
	f.Add([]byte(`{"id":"x","pubkey":"x","created_at":1,"kind":444,"tags":[["e","x"],["relays","wss://a"]],"content":"AAEAAw=="}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, err := ParseWelcomeRumor(raw); err != nil && !errors.Is(err, ErrWelcome) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

// FuzzUnwrapWelcome feeds arbitrary gift-wrap JSON to the recipient.
func FuzzUnwrapWelcome(f *testing.F) {
	me := mustAccount(f)
	gw := wrapFixture(f, me)
	b, _ := json.Marshal(gw)
	f.Add(b)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev nostr.Event
		if json.Unmarshal(raw, &ev) != nil {
			return
		}
		if _, err := UnwrapWelcome(&ev, me); err != nil && !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func wrapFixture(t testing.TB, to *Account) *nostr.Event {
	from := mustAccount(t)
	r := nostr.Event{PubKey: from.PublicKey().Hex(), Kind: KindWelcome, CreatedAt: 1, Tags: nostr.Tags{{"e", string(bytes.Repeat([]byte("a"), 64))}, {"relays", "wss://a.example"}}, Content: "AAEAAw=="}
	gw, err := WrapWelcome(from, r, to.PublicKey(), WrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

// FuzzKeyPackageEvent runs the one KeyPackage event parser, and the
// current profile's checks, on arbitrary events.
func FuzzKeyPackageEvent(f *testing.F) {
	acct := mustAccount(f)
	b, err := NewKeyPackage(acct, KeyPackageOptions{})
	if err != nil {
		f.Fatal(err)
	}
	ev, _ := b.Event(acct, NewSlot(), time.Now())
	raw, _ := json.Marshal(ev)
	f.Add(raw)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev nostr.Event
		if json.Unmarshal(raw, &ev) != nil {
			return
		}
		if _, err := ParseKeyPackageEvent(&ev); err != nil && !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
		if _, err := ValidateKeyPackageEvent(&ev, time.Now()); err != nil && !isTyped(err) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

// FuzzGroupReceive hands a member arbitrary kind 445 content sealed with
// its current key (so the fuzzer reaches the MLS layer): nothing may
// panic, and a refused event leaves the group's state unchanged.
func FuzzGroupReceive(f *testing.F) {
	alice, bob := newMember(f, "alice"), newMember(f, "bob")
	var err error
	if alice.g, err = CreateGroup(alice.acct, NewGroupParams{Relays: []string{"wss://relay.example"}}, GroupOptions{}); err != nil {
		f.Fatal(err)
	}
	o, err := alice.g.Invite(bob.kpEvent)
	if err != nil {
		f.Fatal(err)
	}
	publish(f, alice, o, bob)
	chat, _ := bob.g.SendChat("seed")
	msg, _, _ := OpenGroupEvent(chat, [][]byte{alice.g.tip.key})
	f.Add(msg)
	up, _ := bob.g.SelfUpdate()
	msg, _, _ = OpenGroupEvent(up.Event, [][]byte{alice.g.tip.key})
	f.Add(msg)
	bob.g.DiscardPending()
	f.Fuzz(func(t *testing.T, m []byte) {
		before, err := alice.g.MLS().MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		ev, err := NewGroupEvent(alice.g.tip.key, alice.g.tip.h, m, GroupEventOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.g.Receive(ev); err != nil {
			after, _ := alice.g.MLS().MarshalState()
			if !bytes.Equal(before, after) {
				t.Fatalf("refused message (%v) changed the state", err)
			}
		}
	})
}
