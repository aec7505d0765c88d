package marmot

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
)

// member is one simulated client: an account, its published KeyPackage and
// (once joined) its group.
type member struct {
	name    string
	acct    *Account
	bundle  *KeyPackageBundle
	kpEvent *nostr.Event
	g       *Group
}

func newMember(t testing.TB, name string) *member {
	t.Helper()
	m := &member{name: name, acct: mustAccount(t)}
	var err error
	if m.bundle, err = NewKeyPackage(m.acct, KeyPackageOptions{}); err != nil {
		t.Fatal(err)
	}
	if m.kpEvent, err = m.bundle.Event(m.acct, NewSlot(), time.Now()); err != nil {
		t.Fatal(err)
	}
	return m
}

// publish stands in for a relay that accepted the commit: the committer
// applies it and the Welcomes go out, gift-wrapped, to their invitees.
func publish(t testing.TB, by *member, o *Outgoing, invitees ...*member) {
	t.Helper()
	if _, err := by.g.ConfirmPublished(); err != nil {
		t.Fatalf("%s: confirm: %v", by.name, err)
	}
	for _, w := range o.Welcomes {
		var to *member
		for _, m := range invitees {
			if m.acct.PublicKey() == w.Invitee {
				to = m
			}
		}
		if to == nil {
			t.Fatalf("welcome for an unknown invitee")
		}
		gw, err := WrapWelcome(by.acct, w.Rumor, w.Invitee, WrapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rumor, err := UnwrapWelcome(gw, to.acct)
		if err != nil {
			t.Fatalf("%s: unwrap: %v", to.name, err)
		}
		if rumor.KeyPackageEvent != to.kpEvent.ID {
			t.Fatalf("rumor names KeyPackage %s, want %s", rumor.KeyPackageEvent, to.kpEvent.ID)
		}
		if to.g, err = Join(to.acct, rumor, to.bundle, GroupOptions{}); err != nil {
			t.Fatalf("%s: join: %v", to.name, err)
		}
	}
}

// deliver hands ev to every member in ms and fails on any error.
func deliver(t testing.TB, ev *nostr.Event, ms ...*member) []*Received {
	t.Helper()
	var out []*Received
	for _, m := range ms {
		r, err := m.g.Receive(ev)
		if err != nil {
			t.Fatalf("%s: receive: %v", m.name, err)
		}
		out = append(out, r)
	}
	return out
}

func sameState(t testing.TB, ms ...*member) {
	t.Helper()
	for _, m := range ms[1:] {
		if m.g.Epoch() != ms[0].g.Epoch() || !bytes.Equal(m.g.MLS().EpochAuthenticator(), ms[0].g.MLS().EpochAuthenticator()) {
			t.Fatalf("%s at epoch %d and %s at epoch %d disagree", ms[0].name, ms[0].g.Epoch(), m.name, m.g.Epoch())
		}
		if m.g.NostrGroupID() != ms[0].g.NostrGroupID() {
			t.Fatalf("routing ids differ")
		}
	}
}

// TestThreeMemberGroup runs the scenario in memory: create, invite
// two, chat, update, remove, SelfRemove.
func TestThreeMemberGroup(t *testing.T) {
	alice, bob, carol := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol")
	var err error
	alice.g, err = CreateGroup(alice.acct, NewGroupParams{Name: "burrow", Relays: []string{"wss://relay.example"}}, GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The founding commit adds bob and is never published.
	o, err := alice.g.Invite(bob.kpEvent)
	if err != nil {
		t.Fatal(err)
	}
	if o.Event != nil {
		t.Fatal("the founding commit has an event to publish")
	}
	publish(t, alice, o, bob)
	sameState(t, alice, bob)

	o, err = alice.g.Invite(carol.kpEvent)
	if err != nil {
		t.Fatal(err)
	}
	if o.Event == nil || len(o.Event.Tags) != 1 || o.Event.Tags[0][0] != "h" {
		t.Fatalf("commit event %v", o.Event)
	}
	publish(t, alice, o, carol)
	rs := deliver(t, o.Event, bob)
	if rs[0].Kind != ReceivedCommit || !slices.Equal(rs[0].Added, []Pubkey{carol.acct.PublicKey()}) || rs[0].Sender != alice.acct.PublicKey() {
		t.Fatalf("bob saw %+v", rs[0])
	}
	sameState(t, alice, bob, carol)
	if st := carol.g.State(); st.Profile.Name != "burrow" || !st.Admins.IsAdmin(alice.acct.PublicKey()) || len(st.Admins.Admins) != 1 {
		t.Fatalf("carol's state %+v", st)
	}

	// Chat.
	ev, err := bob.g.SendChat("hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range deliver(t, ev, alice, carol) {
		if r.Kind != ReceivedApp || r.App.Content != "hello" || r.App.Kind != KindChat || r.Sender != bob.acct.PublicKey() {
			t.Fatalf("chat received as %+v", r)
		}
	}
	// The same event again (another relay's copy) is a duplicate, and so is
	// bob's own echo.
	if _, err := alice.g.Receive(ev); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second copy: %v", err)
	}
	if _, err := bob.g.Receive(ev); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("own echo: %v", err)
	}

	// A non-admin self-update.
	o, err = carol.g.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	publish(t, carol, o)
	deliver(t, o.Event, alice, bob)
	sameState(t, alice, bob, carol)

	// Bob may not remove carol; alice may.
	if _, err := bob.g.Remove(carol.acct.PublicKey()); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("bob removing: %v", err)
	}
	o, err = alice.g.Remove(carol.acct.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, alice, o)
	rs = deliver(t, o.Event, bob, carol)
	if !slices.Equal(rs[0].Removed, []Pubkey{carol.acct.PublicKey()}) || !rs[1].RemovedSelf {
		t.Fatalf("removal seen as %+v / %+v", rs[0], rs[1])
	}
	sameState(t, alice, bob)
	after, err := alice.g.SendChat("carol cannot read this")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.g.Receive(after); !errors.Is(err, mls.ErrInactive) {
		t.Fatalf("removed member received: %v", err)
	}
	deliver(t, after, bob)

	// Bob leaves with SelfRemove; alice commits it.
	leave, err := bob.g.Leave()
	if err != nil {
		t.Fatal(err)
	}
	if r := deliver(t, leave.Event, alice)[0]; r.Kind != ReceivedProposal || r.Proposal != mls.ProposalSelfRemove {
		t.Fatalf("proposal seen as %+v", r)
	}
	o, err = alice.g.CommitProposals()
	if err != nil {
		t.Fatal(err)
	}
	publish(t, alice, o)
	if r := deliver(t, o.Event, bob)[0]; !r.RemovedSelf {
		t.Fatalf("bob not removed: %+v", r)
	}
	if got := alice.g.Members(); !slices.Equal(got, []Pubkey{alice.acct.PublicKey()}) {
		t.Fatalf("members %v", got)
	}
}
