package marmot_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/interop"
	"github.com/burrow-relay/burrow/marmot"
	"github.com/burrow-relay/burrow/mls"
)

// tsmls2 starts the ts-mls 2.0.0-rc.10 peer (interop/tsmls2), installing
// its locked packages when missing; without node it skips, or fails when
// RELAY_TEST_REQUIRE_SERVICES=1.
func tsmls2(t *testing.T, ctx context.Context) *interop.Peer {
	t.Helper()
	var cfg interop.Config
	p, err := cfg.Start(ctx, interop.KindTSMLS2)
	if errors.Is(err, interop.ErrUnavailable) {
		if ierr := cfg.InstallNodePackages(ctx, interop.KindTSMLS2); ierr == nil {
			p, err = cfg.Start(ctx, interop.KindTSMLS2)
		}
	}
	if errors.Is(err, interop.ErrUnavailable) {
		if os.Getenv("RELAY_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatalf("RELAY_TEST_REQUIRE_SERVICES=1 but the ts-mls 2 peer cannot run: %v", err)
		}
		t.Skipf("!!! MLS INTEROP NOT TESTED: the ts-mls 2 peer cannot run here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type ext struct {
	Type uint16 `json:"type"`
	Data string `json:"data"`
}

func dictExt(t *testing.T, entries ...mls.ComponentData) ext {
	t.Helper()
	b, err := mls.Marshal(&mls.AppDataDictionary{Components: entries})
	if err != nil {
		t.Fatal(err)
	}
	return ext{uint16(mls.ExtAppDataDictionary), hex.EncodeToString(b)}
}

// tsKeyPackage has the ts-mls peer make a current-profile KeyPackage for
// account: a signature key it generates, an identity proof the account
// signs over that key, the profile's capabilities and the last-resort
// component. It returns the signed kind 30443 event.
func tsKeyPackage(t *testing.T, ctx context.Context, p *interop.Peer, acct *marmot.Account) *nostr.Event {
	t.Helper()
	var key struct {
		PublicKey interop.Hex `json:"public_key"`
	}
	if err := p.Call(ctx, "new_signature_key", map[string]any{"suite": 1}, &key); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	proof, err := marmot.NewIdentityProof(acct, mls.X25519AES128GCMSHA256Ed25519, key.PublicKey, uint64(now.Unix()))
	if err != nil {
		t.Fatal(err)
	}
	components := marmot.ComponentsList{marmot.ComponentAppComponents, marmot.ComponentAdminPolicy, marmot.ComponentNostrRouting, marmot.ComponentIdentityProof}
	pub := acct.PublicKey()
	var kp interop.KeyPackageResult
	if err := p.Call(ctx, "create_key_package", map[string]any{
		"identity":              hex.EncodeToString(pub[:]),
		"suite":                 1,
		"use_signature_key":     true,
		"capability_extensions": []int{0x0006},
		"capability_proposals":  []int{0x0008, 0x000a},
		"lifetime":              interop.Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(80 * 24 * time.Hour).Unix())},
		"leaf_extensions": []ext{dictExt(t,
			mls.ComponentData{ComponentID: marmot.ComponentAppComponents, Data: components.Marshal()},
			mls.ComponentData{ComponentID: marmot.ComponentSafeAAD, Data: marmot.ComponentsList{}.Marshal()},
			mls.ComponentData{ComponentID: marmot.ComponentIdentityProof, Data: proof.Marshal()})},
		"extensions": []ext{dictExt(t, mls.ComponentData{ComponentID: marmot.ComponentLastResort})},
	}, &kp); err != nil {
		t.Fatal(err)
	}
	decoded, err := mls.DecodeMLSMessage(kp.KeyPackage)
	if err != nil {
		t.Fatal(err)
	}
	b := &marmot.KeyPackageBundle{KeyPackage: decoded.KeyPackage, Ref: kp.KeyPackageRef, Message: kp.KeyPackage}
	ev, err := b.Event(acct, marmot.NewSlot(), now)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestTSMLS2MarmotGroup: a group made by marmot/ takes in a ts-mls 2
// member, and the two exchange KeyPackages, a Welcome, application
// messages and commits at the MLS level (the kind 445 layer around them
// stays on the Go side, the peer only sees MLS bytes); both derive the same
// group-event key.
func TestTSMLS2MarmotGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := tsmls2(t, ctx)
	alice, err := marmot.NewAccount()
	if err != nil {
		t.Fatal(err)
	}
	tsAcct, _ := marmot.NewAccount()
	g, err := marmot.CreateGroup(alice, marmot.NewGroupParams{Name: "interop", Relays: []string{"wss://relay.example"}}, marmot.GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// ts-mls's KeyPackage passes the current profile's checks here.
	kpEv := tsKeyPackage(t, ctx, p, tsAcct)
	if _, err := marmot.ValidateKeyPackageEvent(kpEv, time.Now()); err != nil {
		t.Fatalf("ts-mls KeyPackage: %v", err)
	}
	o, err := g.Invite(kpEv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.ConfirmPublished(); err != nil {
		t.Fatal(err)
	}
	welcome, err := base64.StdEncoding.DecodeString(o.Welcomes[0].Rumor.Content)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "join", map[string]any{"welcome": hex.EncodeToString(welcome)}, nil); err != nil {
		t.Fatalf("ts-mls joins from marmot's Welcome: %v", err)
	}
	agree := func() {
		t.Helper()
		var a struct{ Value interop.Hex }
		var k struct{ Secret interop.Hex }
		if err := p.Call(ctx, "epoch_authenticator", nil, &a); err != nil {
			t.Fatal(err)
		}
		if err := p.Call(ctx, "export", map[string]any{"label": "marmot", "context": hex.EncodeToString([]byte("group-event")), "length": 32}, &k); err != nil {
			t.Fatal(err)
		}
		key, _ := marmot.GroupEventKey(g.MLS())
		if !bytes.Equal(a.Value, g.MLS().EpochAuthenticator()) || !bytes.Equal(k.Secret, key) {
			t.Fatalf("epoch %d: ts-mls and marmot disagree on the epoch or the group-event key", g.Epoch())
		}
	}
	agree()

	// marmot -> ts-mls: a chat message.
	ev, err := g.SendChat("hello ts-mls")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := marmot.GroupEventKey(g.MLS())
	msg, _, err := marmot.OpenGroupEvent(ev, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Kind      string
		Plaintext interop.Hex
	}
	if err := p.Call(ctx, "process", map[string]any{"message": hex.EncodeToString(msg)}, &got); err != nil {
		t.Fatal(err)
	}
	app, err := marmot.ParseAppEvent(got.Plaintext)
	if err != nil || got.Kind != "application" || app.Content != "hello ts-mls" || app.PubKey != alice.PublicKey().Hex() {
		t.Fatalf("ts-mls read %q (%v)", got.Plaintext, err)
	}

	// ts-mls -> marmot: a chat message from the ts-mls member's account.
	payload, _ := marmot.NewAppEvent(tsAcct.PublicKey(), marmot.KindChat, nil, "hello marmot", time.Now().Unix()).Marshal()
	var prot struct{ Message interop.Hex }
	if err := p.Call(ctx, "protect", map[string]any{"plaintext": hex.EncodeToString(payload)}, &prot); err != nil {
		t.Fatal(err)
	}
	wrapped, err := marmot.NewGroupEvent(key, g.NostrGroupID(), prot.Message, marmot.GroupEventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := g.Receive(wrapped)
	if err != nil || r.App.Content != "hello marmot" || r.Sender != tsAcct.PublicKey() {
		t.Fatalf("marmot read %+v (%v)", r, err)
	}

	// ts-mls commits a self-update (as a PublicMessage, the profile's
	// handshake format): its new leaf keeps the identity proof.
	var c struct{ Commit interop.Hex }
	if err := p.Call(ctx, "commit", map[string]any{"public_message": true}, &c); err != nil {
		t.Fatal(err)
	}
	wrapped, _ = marmot.NewGroupEvent(key, g.NostrGroupID(), c.Commit, marmot.GroupEventOptions{})
	if r, err = g.Receive(wrapped); err != nil || r.Kind != marmot.ReceivedCommit {
		t.Fatalf("ts-mls self-update: %+v %v", r, err)
	}
	agree()

	// marmot commits a self-update; ts-mls processes it.
	o, err = g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	key, _ = marmot.GroupEventKey(g.MLS())
	msg, _, err = marmot.OpenGroupEvent(o.Event, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.ConfirmPublished(); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "process", map[string]any{"message": hex.EncodeToString(msg)}, nil); err != nil {
		t.Fatalf("ts-mls processes marmot's commit: %v", err)
	}
	agree()
}

// TestTSMLS2GroupTakesMarmotMember: a group made by ts-mls with the Marmot
// group state (the ts-mls member's account as admin) invites a marmot/
// KeyPackage; marmot/ joins from ts-mls's Welcome with every check of the
// profile, and the two chat.
func TestTSMLS2GroupTakesMarmotMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := tsmls2(t, ctx)
	tsAcct, _ := marmot.NewAccount()
	bob, _ := marmot.NewAccount()
	bundle, err := marmot.NewKeyPackage(bob, marmot.KeyPackageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The ts-mls creator's leaf carries an identity proof over a key the
	// peer makes; the GroupContext carries the Marmot group state.
	admins, _ := marmot.AdminPolicy{Admins: []marmot.Pubkey{tsAcct.PublicKey()}}.Marshal()
	routing, _ := marmot.NostrRouting{GroupID: [32]byte{7, 7}, Relays: []string{"wss://relay.example"}}.Marshal()
	required := marmot.ComponentsList{marmot.ComponentAdminPolicy, marmot.ComponentNostrRouting, marmot.ComponentIdentityProof}
	var key struct {
		PublicKey interop.Hex `json:"public_key"`
	}
	if err := p.Call(ctx, "new_signature_key", map[string]any{"suite": 1}, &key); err != nil {
		t.Fatal(err)
	}
	proof, _ := marmot.NewIdentityProof(tsAcct, mls.X25519AES128GCMSHA256Ed25519, key.PublicKey, uint64(time.Now().Unix()))
	pub := tsAcct.PublicKey()
	components := marmot.ComponentsList{marmot.ComponentAppComponents, marmot.ComponentAdminPolicy, marmot.ComponentNostrRouting, marmot.ComponentIdentityProof}
	if err := p.Call(ctx, "create_group", map[string]any{
		"group_id":              hex.EncodeToString(bytes.Repeat([]byte{9}, 32)),
		"identity":              hex.EncodeToString(pub[:]),
		"suite":                 1,
		"use_signature_key":     true,
		"capability_extensions": []int{0x0006},
		"capability_proposals":  []int{0x0008, 0x000a},
		"leaf_extensions": []ext{dictExt(t,
			mls.ComponentData{ComponentID: marmot.ComponentAppComponents, Data: components.Marshal()},
			mls.ComponentData{ComponentID: marmot.ComponentSafeAAD, Data: marmot.ComponentsList{}.Marshal()},
			mls.ComponentData{ComponentID: marmot.ComponentIdentityProof, Data: proof.Marshal()})},
		"required_capabilities": map[string]any{"extensions": []int{0x0006}, "proposals": []int{0x0008, 0x000a}},
		"group_extensions": []ext{dictExt(t,
			mls.ComponentData{ComponentID: marmot.ComponentAppComponents, Data: required.Marshal()},
			mls.ComponentData{ComponentID: marmot.ComponentAdminPolicy, Data: admins},
			mls.ComponentData{ComponentID: marmot.ComponentNostrRouting, Data: routing})},
	}, nil); err != nil {
		t.Fatalf("ts-mls create_group: %v", err)
	}
	var c struct {
		Commit, Welcome interop.Hex
	}
	if err := p.Call(ctx, "commit", map[string]any{"add": []string{hex.EncodeToString(bundle.Message)}, "public_message": true}, &c); err != nil {
		t.Fatalf("ts-mls adds marmot's KeyPackage: %v", err)
	}
	w := &marmot.WelcomeRumor{Inviter: tsAcct.PublicKey(), KeyPackageEvent: hex.EncodeToString(make([]byte, 32)), Welcome: c.Welcome}
	g, err := marmot.Join(bob, w, bundle, marmot.GroupOptions{})
	if err != nil {
		t.Fatalf("marmot joins from ts-mls's Welcome: %v", err)
	}
	if g.NostrGroupID() != [32]byte{7, 7} || !g.IsAdmin(tsAcct.PublicKey()) {
		t.Fatal("joined group state differs")
	}
	var a struct{ Value interop.Hex }
	if err := p.Call(ctx, "epoch_authenticator", nil, &a); err != nil || !bytes.Equal(a.Value, g.MLS().EpochAuthenticator()) {
		t.Fatalf("epoch authenticators differ (%v)", err)
	}
	ev, err := g.SendChat("from marmot")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := marmot.GroupEventKey(g.MLS())
	msg, _, _ := marmot.OpenGroupEvent(ev, [][]byte{k})
	var got struct{ Plaintext interop.Hex }
	if err := p.Call(ctx, "process", map[string]any{"message": hex.EncodeToString(msg)}, &got); err != nil {
		t.Fatal(err)
	}
	if app, err := marmot.ParseAppEvent(got.Plaintext); err != nil || app.Content != "from marmot" {
		t.Fatalf("ts-mls read %q %v", got.Plaintext, err)
	}
}
