package marmot

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
)

// welcomeFixture makes a real Welcome: alice's group inviting bob.
func welcomeFixture(t *testing.T) (alice, bob *member, o *Outgoing) {
	t.Helper()
	alice, bob = newMember(t, "alice"), newMember(t, "bob")
	var err error
	if alice.g, err = CreateGroup(alice.acct, NewGroupParams{Relays: []string{"wss://relay.example"}}, GroupOptions{}); err != nil {
		t.Fatal(err)
	}
	if o, err = alice.g.Invite(bob.kpEvent); err != nil {
		t.Fatal(err)
	}
	return alice, bob, o
}

func TestWelcomeRumorShape(t *testing.T) {
	alice, bob, o := welcomeFixture(t)
	r := o.Welcomes[0].Rumor
	if r.Kind != 444 || r.Sig != "" || r.PubKey != alice.acct.PublicKey().Hex() || r.ID != r.GetID() {
		t.Fatalf("rumor %+v", r)
	}
	if !tagsEqual(r.Tags, nostr.Tags{{"e", bob.kpEvent.ID}, {"relays", "wss://relay.example"}}) {
		t.Fatalf("tags %v", r.Tags)
	}
	gw, err := WrapWelcome(alice.acct, r, bob.acct.PublicKey(), WrapOptions{Expiration: time.Unix(1_900_000_000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if gw.Kind != 1059 || gw.PubKey == alice.acct.PublicKey().Hex() || !tagsEqual(gw.Tags, nostr.Tags{{"p", bob.acct.PublicKey().Hex()}, {"expiration", "1900000000"}}) {
		t.Fatalf("gift wrap %+v", gw)
	}
	w, err := UnwrapWelcome(gw, bob.acct)
	if err != nil {
		t.Fatal(err)
	}
	if w.Inviter != alice.acct.PublicKey() || w.KeyPackageEvent != bob.kpEvent.ID || len(w.Relays) != 1 {
		t.Fatalf("unwrapped %+v", w)
	}
	// Not for carol.
	carol := newMember(t, "carol")
	if _, err := UnwrapWelcome(gw, carol.acct); !errors.Is(err, ErrWrongRecipient) {
		t.Fatalf("carol unwrapped: %v", err)
	}
}

// wrapRaw gift-wraps an arbitrary rumor JSON (as a hostile inviter could).
func wrapRaw(t *testing.T, from *Account, rumorJSON string, to Pubkey, sealKind int) *nostr.Event {
	t.Helper()
	toHex := to.Hex()
	sealContent, err := from.Encrypt(rumorJSON, toHex)
	if err != nil {
		t.Fatal(err)
	}
	seal := nostr.Event{Kind: sealKind, Content: sealContent, CreatedAt: nostr.Now(), Tags: nostr.Tags{}}
	if err := from.SignEvent(&seal); err != nil {
		t.Fatal(err)
	}
	eph := mustAccount(t)
	wrapped, err := eph.Encrypt(seal.String(), toHex)
	if err != nil {
		t.Fatal(err)
	}
	gw := nostr.Event{Kind: 1059, Content: wrapped, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"p", toHex}}}
	if err := eph.SignEvent(&gw); err != nil {
		t.Fatal(err)
	}
	return &gw
}

func TestUnwrapWelcomeRefusals(t *testing.T) {
	alice, bob, o := welcomeFixture(t)
	good := o.Welcomes[0].Rumor
	rumorJSON := func(edit func(*nostr.Event)) string {
		r := good
		r.Tags = append(nostr.Tags(nil), good.Tags...)
		edit(&r)
		r.ID = r.GetID()
		return r.String()
	}
	signed := func() string {
		r := good
		_ = alice.acct.SignEvent(&r)
		return r.String()
	}()
	cases := []struct {
		name  string
		gw    *nostr.Event
		check error
	}{
		{"valid", wrapRaw(t, alice.acct, rumorJSON(func(*nostr.Event) {}), bob.acct.PublicKey(), 13), nil},
		{"rumor signed", wrapRaw(t, alice.acct, signed, bob.acct.PublicKey(), 13), ErrWelcome},
		{"seal kind 14", wrapRaw(t, alice.acct, rumorJSON(func(*nostr.Event) {}), bob.acct.PublicKey(), 14), ErrWelcome},
		{"rumor by someone else than the seal", wrapRaw(t, newMember(t, "eve").acct, rumorJSON(func(*nostr.Event) {}), bob.acct.PublicKey(), 13), ErrWelcome},
		{"rumor kind 445", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Kind = 445 }), bob.acct.PublicKey(), 13), ErrWelcome},
		{"no e tag", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Tags = r.Tags[1:] }), bob.acct.PublicKey(), 13), ErrWelcome},
		{"two relays tags", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Tags = append(r.Tags, r.Tags[1]) }), bob.acct.PublicKey(), 13), ErrWelcome},
		{"empty relays tag", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Tags[1] = nostr.Tag{"relays"} }), bob.acct.PublicKey(), 13), ErrWelcome},
		{"bad relay URL", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Tags[1] = nostr.Tag{"relays", "https://x"} }), bob.acct.PublicKey(), 13), ErrWelcome},
		{"e tag uppercase", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Tags[0] = nostr.Tag{"e", strings.ToUpper(bob.kpEvent.ID)} }), bob.acct.PublicKey(), 13), ErrWelcome},
		{"encoding tag is ignored", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Tags = append(r.Tags, nostr.Tag{"encoding", "base64"}) }), bob.acct.PublicKey(), 13), nil},
		{"content not a Welcome", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Content = bob.kpEvent.Content }), bob.acct.PublicKey(), 13), ErrWelcome},
		{"content hex", wrapRaw(t, alice.acct, rumorJSON(func(r *nostr.Event) { r.Content = "00" }), bob.acct.PublicKey(), 13), ErrWelcome},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnwrapWelcome(tc.gw, bob.acct)
			if tc.check == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.check) {
				t.Fatalf("err = %v, want %v", err, tc.check)
			}
		})
	}
	// Gift-wrap level refusals.
	gw := cases[0].gw
	twoP := *gw
	twoP.Tags = append(nostr.Tags{}, gw.Tags[0], nostr.Tag{"p", alice.acct.PublicKey().Hex()})
	badSig := *gw
	badSig.Sig = strings.Repeat("0", 128)
	for name, ev := range map[string]*nostr.Event{"two p tags": &twoP, "bad signature": &badSig} {
		if _, err := UnwrapWelcome(ev, bob.acct); !errors.Is(err, ErrWelcome) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestJoinChecks: the joiner refuses a Welcome whose author is not an
// admin, or that names a KeyPackage it does not hold, and the KeyPackage
// stays usable after a refusal.
func TestJoinChecks(t *testing.T) {
	alice, bob, o := welcomeFixture(t)
	if _, err := alice.g.ConfirmPublished(); err != nil {
		t.Fatal(err)
	}
	rumor := o.Welcomes[0].Rumor
	gw, _ := WrapWelcome(alice.acct, rumor, bob.acct.PublicKey(), WrapOptions{})
	w, err := UnwrapWelcome(gw, bob.acct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(bob.acct, w, nil, GroupOptions{}); !errors.Is(err, ErrUnknownKeyPackage) {
		t.Fatalf("no KeyPackage: %v", err)
	}
	other := newMember(t, "other")
	if _, err := Join(other.acct, w, other.bundle, GroupOptions{}); !errors.Is(err, ErrUnknownKeyPackage) {
		t.Fatalf("another KeyPackage: %v", err)
	}
	// A rumor claiming another author than the GroupInfo signer.
	eve := newMember(t, "eve")
	forged := *w
	forged.Inviter = eve.acct.PublicKey()
	if _, err := Join(bob.acct, &forged, bob.bundle, GroupOptions{}); !errors.Is(err, ErrWelcome) {
		t.Fatalf("forged author: %v", err)
	}
	g, err := Join(bob.acct, w, bob.bundle, GroupOptions{})
	if err != nil {
		t.Fatalf("join after refusals: %v", err)
	}
	sameState(t, alice, &member{name: "bob", g: g})

	// A non-admin's Welcome: alice makes bob an admin, bob invites carol,
	// then alice (behind bob's back, in a fork) removes bob's admin right;
	// simpler: a group whose admin policy lists only a third account.
	carol := newMember(t, "carol")
	notAdmin, err := CreateGroup(carol.acct, NewGroupParams{Relays: []string{"wss://relay.example"}}, GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dave := newMember(t, "dave")
	// carol drops herself from the admins behind the Marmot layer: the
	// policy names eve only, then carol commits an Add anyway.
	policy, _ := AdminPolicy{Admins: []Pubkey{eve.acct.PublicKey()}}.Marshal()
	if _, _, err := notAdmin.commit([]mls.Proposal{{Type: mls.ProposalAppDataUpdate, AppDataUpdate: &mls.AppDataUpdate{ComponentID: ComponentAdminPolicy, Op: mls.AppDataOpUpdate, Update: policy}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := notAdmin.ConfirmPublished(); err != nil {
		t.Fatal(err)
	}
	out, err := notAdmin.MLS().Commit(mls.CommitOptions{Proposals: []mls.Proposal{{Type: mls.ProposalAdd, Add: &mls.Add{KeyPackage: *dave.bundle.KeyPackage}}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewWelcomeRumor(carol.acct.PublicKey(), out.Welcome, dave.kpEvent.ID, []string{"wss://relay.example"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(r)
	dw, err := ParseWelcomeRumor(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(dave.acct, dw, dave.bundle, GroupOptions{}); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("non-admin's Welcome: %v", err)
	}
}
