package marmot

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
)

// fourMembers makes alice (admin) with bob, carol and dave joined.
func fourMembers(t *testing.T) (alice, bob, carol, dave *member) {
	t.Helper()
	alice, bob, carol, dave = newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol"), newMember(t, "dave")
	var err error
	if alice.g, err = CreateGroup(alice.acct, NewGroupParams{Relays: []string{"wss://relay.example"}}, GroupOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := alice.g.Invite(bob.kpEvent, carol.kpEvent, dave.kpEvent)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, alice, o, bob, carol, dave)
	sameState(t, alice, bob, carol, dave)
	return
}

// race has two members commit on the same epoch; publishing both is what a
// relay without commit slots allows. Each committer confirms its own
// (publish before apply) and every member then receives both events, in
// the orders given: all end on the same branch.
func race(t *testing.T, a, b *member, oa, ob *Outgoing, all []*member, orders map[*member][2]*nostr.Event) {
	t.Helper()
	if _, err := a.g.ConfirmPublished(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.ConfirmPublished(); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		for _, ev := range orders[m] {
			if _, err := m.g.Receive(ev); err != nil && !errors.Is(err, ErrDuplicate) {
				t.Fatalf("%s: %v", m.name, err)
			}
		}
	}
	sameState(t, all...)
}

func TestSameEpochRaceLowerCommitterWins(t *testing.T) {
	alice, bob, carol, dave := fourMembers(t)
	all := []*member{alice, bob, carol, dave}
	ob, err := bob.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	oc, err := carol.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	race(t, bob, carol, ob, oc, all, map[*member][2]*nostr.Event{
		alice: {ob.Event, oc.Event}, bob: {ob.Event, oc.Event}, carol: {ob.Event, oc.Event}, dave: {oc.Event, ob.Event},
	})
	// Both are ordinary self-updates with no witnesses: the lower committer
	// account wins, whatever the arrival order.
	winner := bob
	if bytes.Compare(carol.acct.pub[:], bob.acct.pub[:]) < 0 {
		winner = carol
	}
	for _, m := range all {
		if m.g.tip.committer != winner.acct.PublicKey() {
			t.Fatalf("%s followed %x, want %s", m.name, m.g.tip.committer[:4], winner.name)
		}
	}
	// The losing committer applied its own commit first, and whoever
	// received the losing commit first switched too.
	loser := carol
	if winner == carol {
		loser = bob
	}
	if loser.g.Rewinds != 1 || winner.g.Rewinds != 0 {
		t.Fatalf("rewinds: loser %d, winner %d", loser.g.Rewinds, winner.g.Rewinds)
	}
	// The group works on afterwards.
	ev, err := dave.g.SendChat("after the race")
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, ev, alice, bob, carol)
}

func TestPrivilegedCommitBeatsOrdinary(t *testing.T) {
	alice, bob, carol, dave := fourMembers(t)
	all := []*member{alice, bob, carol, dave}
	ob, err := bob.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	oa, err := alice.g.Remove(dave.acct.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	race(t, alice, bob, oa, ob, []*member{alice, bob, carol}, map[*member][2]*nostr.Event{
		alice: {ob.Event, oa.Event}, bob: {ob.Event, oa.Event}, carol: {ob.Event, oa.Event},
	})
	for _, m := range all[:3] {
		if !m.g.tip.privileged || m.g.tip.committer != alice.acct.PublicKey() || slices.Contains(m.g.Members(), dave.acct.PublicKey()) {
			t.Fatalf("%s did not follow the admin's removal", m.name)
		}
	}
	if bob.g.Rewinds != 1 || carol.g.Rewinds != 1 {
		t.Fatalf("rewinds bob %d carol %d, want 1 each (they applied bob's commit first)", bob.g.Rewinds, carol.g.Rewinds)
	}
}

func TestLongerBranchWins(t *testing.T) {
	alice, bob, carol, dave := fourMembers(t)
	// Bob's self-update, then carol's self-update on top of it: a branch of
	// depth 2. Dave's competing self-update at the same parent is depth 1.
	ob, err := bob.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	od, err := dave.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	publish(t, bob, ob)
	deliver(t, ob.Event, carol)
	oc, err := carol.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	publish(t, carol, oc)
	deliver(t, oc.Event, bob)
	publish(t, dave, od)
	// Alice sees dave's first, then bob's and carol's.
	for _, ev := range []*nostr.Event{od.Event, ob.Event, oc.Event} {
		if _, err := alice.g.Receive(ev); err != nil {
			t.Fatal(err)
		}
	}
	// Dave sees the longer branch and leaves his own commit for it.
	for _, ev := range []*nostr.Event{ob.Event, oc.Event} {
		if _, err := dave.g.Receive(ev); err != nil {
			t.Fatal(err)
		}
	}
	// Bob and carol see dave's late commit and stay.
	for _, m := range []*member{bob, carol} {
		r, err := m.g.Receive(od.Event)
		if err != nil {
			t.Fatal(err)
		}
		if r.Canonical || r.Rewound {
			t.Fatalf("%s switched to the shorter branch", m.name)
		}
	}
	sameState(t, alice, bob, carol, dave)
	if alice.g.tip.committer != carol.acct.PublicKey() {
		t.Fatal("alice is not on the longer branch")
	}
}

func TestWitnessQuorumBeatsBareCommit(t *testing.T) {
	alice, bob, carol, dave := fourMembers(t)
	ob, err := bob.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	oc, err := carol.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	// The branch that would lose the tie-break (higher committer) gets two
	// chat messages from two members in its new epoch.
	loser, winner, lo, wo := bob, carol, ob, oc
	if bytes.Compare(bob.acct.pub[:], carol.acct.pub[:]) < 0 {
		loser, winner, lo, wo = carol, bob, oc, ob
	}
	publish(t, loser, lo)
	publish(t, winner, wo)
	other := alice
	if _, err := other.g.Receive(lo.Event); err != nil {
		t.Fatal(err)
	}
	if _, err := dave.g.Receive(lo.Event); err != nil {
		t.Fatal(err)
	}
	m1, err := loser.g.SendChat("on my branch")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := dave.g.SendChat("me too")
	if err != nil {
		t.Fatal(err)
	}
	// Everyone gets everything; the witnessed branch must win everywhere.
	for _, m := range []*member{alice, bob, carol, dave} {
		for _, ev := range []*nostr.Event{wo.Event, lo.Event, m1, m2} {
			if _, err := m.g.Receive(ev); err != nil && !errors.Is(err, ErrDuplicate) {
				t.Fatalf("%s: %v", m.name, err)
			}
		}
	}
	sameState(t, alice, bob, carol, dave)
	if alice.g.tip.committer != loser.acct.PublicKey() {
		t.Fatal("the witnessed branch lost")
	}
	_ = winner
}

// TestRefusedMessagesChangeNothing: commits and proposals breaking the
// admin policy are refused and leave the receiver's state byte for byte.
func TestRefusedMessagesChangeNothing(t *testing.T) {
	alice, bob, carol, _ := fourMembers(t)
	// Bob (not an admin) makes an Add commit behind the Marmot layer's back.
	extra := newMember(t, "extra")
	out, err := bob.g.MLS().Commit(mls.CommitOptions{Proposals: []mls.Proposal{{Type: mls.ProposalAdd, Add: &mls.Add{KeyPackage: *extra.bundle.KeyPackage}}}})
	if err != nil {
		t.Fatal(err)
	}
	addEv, err := bob.g.wrap(out.Commit, zeroTime)
	if err != nil {
		t.Fatal(err)
	}
	// Alice (admin) proposes SelfRemove behind the layer's back.
	sr, _, err := alice.g.MLS().ProposeSelfRemove()
	if err != nil {
		t.Fatal(err)
	}
	srEv, err := alice.g.wrap(sr, zeroTime)
	if err != nil {
		t.Fatal(err)
	}
	// Bob proposes a Remove (non-admins only propose SelfRemove).
	rm, _, err := bob.g.MLS().ProposeRemove(0)
	if err != nil {
		t.Fatal(err)
	}
	rmEv, err := bob.g.wrap(rm, zeroTime)
	if err != nil {
		t.Fatal(err)
	}
	// Bob's self-update framed as a PrivateMessage: the profile pins
	// PublicMessage handshakes.
	bob.g.MLS().DiscardPendingCommit()
	priv, err := bob.g.MLS().Commit(mls.CommitOptions{ForcePath: true, WireFormat: mls.WireFormatPrivateMessage})
	if err != nil {
		t.Fatal(err)
	}
	privEv, err := bob.g.wrap(priv.Commit, zeroTime)
	if err != nil {
		t.Fatal(err)
	}
	bob.g.MLS().DiscardPendingCommit()
	// An event for another group's routing id.
	foreign, err := NewGroupEvent(carol.g.tip.key, [32]byte{0xee}, []byte("x"), GroupEventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ev   *nostr.Event
		want error
	}{
		{"non-admin Add commit", addEv, ErrNotAdmin},
		{"PrivateMessage commit", privEv, ErrForbidden},
		{"another group's h", foreign, ErrGroupEvent},
		{"admin SelfRemove proposal", srEv, ErrForbidden},
		{"non-admin Remove proposal", rmEv, ErrNotAdmin},
	} {
		before, err := carol.g.MLS().MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := carol.g.Receive(tc.ev); !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		after, _ := carol.g.MLS().MarshalState()
		if !bytes.Equal(before, after) {
			t.Fatalf("%s changed carol's state", tc.name)
		}
	}
	// Through the Marmot layer the same things are refused before sending.
	if _, err := bob.g.Invite(extra.kpEvent); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("bob invites: %v", err)
	}
	if _, err := alice.g.Leave(); !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin leaves: %v", err)
	}
}

// TestDeferredEventsUnlock: an event of an epoch this member has not
// reached is kept, and processed once the commit that opens its key
// arrives; relay order does not matter.
func TestDeferredEventsUnlock(t *testing.T) {
	alice, bob, carol, _ := fourMembers(t)
	o, err := bob.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	publish(t, bob, o)
	chat, err := bob.g.SendChat("sent in the new epoch")
	if err != nil {
		t.Fatal(err)
	}
	// Carol gets the chat before the commit.
	if _, err := carol.g.Receive(chat); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("early chat: %v", err)
	}
	r, err := carol.g.Receive(o.Event)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Unlocked) != 1 || r.Unlocked[0].App == nil || r.Unlocked[0].App.Content != "sent in the new epoch" {
		t.Fatalf("unlocked %+v", r.Unlocked)
	}
	deliver(t, o.Event, alice)
	deliver(t, chat, alice)
	sameState(t, alice, bob, carol)
}
