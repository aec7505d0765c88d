package mls

import (
	"bytes"
	"testing"
)

// FuzzGroupProcessMessage feeds arbitrary bytes to a member, through
// ProcessMessage and StageCommit: it must never panic, and any input it
// rejects must leave its state as it was, byte for byte. The seeds are
// genuine messages of both wire formats: application data, proposals, a
// commit, and an application message of a past epoch.
func FuzzGroupProcessMessage(f *testing.F) {
	_, alice, bob := twoMembers(f, GroupConfig{RatchetTreeInWelcome: true})
	past, err := alice.g.Protect([]byte("past"), nil)
	if err != nil {
		f.Fatal(err)
	}
	commitAndMerge(f, alice.g, CommitOptions{ForcePath: true}, bob.g)
	app, err := alice.g.Protect([]byte("hi"), nil)
	if err != nil {
		f.Fatal(err)
	}
	prop, _, err := alice.g.ProposeRemove(1)
	if err != nil {
		f.Fatal(err)
	}
	privProp, _, err := alice.g.Propose(&Proposal{Type: ProposalSelfRemove}, MessageOptions{WireFormat: WireFormatPrivateMessage})
	if err != nil {
		f.Fatal(err)
	}
	out, err := alice.g.Commit(CommitOptions{ForcePath: true, SkipStored: true})
	if err != nil {
		f.Fatal(err)
	}
	priv, err := alice.g.Commit(CommitOptions{ForcePath: true, SkipStored: true, WireFormat: WireFormatPrivateMessage})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{app, prop, privProp, out.Commit, priv.Commit, past, nil, {0, 1, 0, 1}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := mustState(t, bob.g)
		sc, err := bob.g.StageCommit(data)
		if err == nil {
			bob.g.DiscardCommit(sc)
		}
		if !bytes.Equal(mustState(t, bob.g), before) {
			t.Fatalf("staging changed the state (%v)", err)
		}
		if _, err := bob.g.ProcessMessage(data); err != nil {
			if !bytes.Equal(mustState(t, bob.g), before) {
				t.Fatalf("rejected input changed the state: %v", err)
			}
		}
	})
}

// FuzzRestoreGroup feeds arbitrary bytes to RestoreGroup: no panic, and
// any state it accepts serializes back to exactly the input. The seeds are
// the states of a member with a pending commit, stored proposals and past
// epochs.
func FuzzRestoreGroup(f *testing.F) {
	_, alice, bob := twoMembers(f, GroupConfig{RatchetTreeInWelcome: true})
	commitAndMerge(f, alice.g, CommitOptions{ForcePath: true}, bob.g)
	f.Add(mustState(f, bob.g))
	prop, _, err := bob.g.ProposeUpdate()
	if err != nil {
		f.Fatal(err)
	}
	deliver(f, prop, alice.g)
	if _, err := alice.g.Commit(CommitOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Add(mustState(f, alice.g))
	f.Add(mustState(f, bob.g))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, signer := range []*testClient{alice, bob} {
			g, err := RestoreGroup(in, signer.signer, GroupConfig{})
			if err != nil {
				continue
			}
			if out := mustState(t, g); !bytes.Equal(out, in) {
				t.Fatalf("restored state serializes differently\n in %x\nout %x", in, out)
			}
		}
	})
}

// FuzzJoin feeds arbitrary Welcome and GroupInfo bytes to the two ways of
// joining: no panic, and nothing accepted that is not a valid group.
func FuzzJoin(f *testing.F) {
	suite, alice, _ := twoMembers(f, GroupConfig{RatchetTreeInWelcome: true})
	carol := newTestClient(f, suite, "carol")
	kp, priv := carol.keyPackage(f, suite)
	out, err := alice.g.Commit(CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}})
	if err != nil {
		f.Fatal(err)
	}
	alice.g.DiscardPendingCommit()
	gi, err := alice.g.GroupInfo(true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(out.Welcome, gi)
	f.Fuzz(func(t *testing.T, welcome, groupInfo []byte) {
		if g, err := JoinFromWelcome(welcome, kp, priv, carol.signer, JoinOptions{}, GroupConfig{}); err == nil && g.Epoch() != 2 {
			t.Fatalf("joined into epoch %d", g.Epoch())
		}
		if g, _, err := JoinExternal(groupInfo, carol.signer, carol.leaf(), ExternalJoinOptions{}, GroupConfig{}); err == nil && g.Epoch() != 2 {
			t.Fatalf("joined externally into epoch %d", g.Epoch())
		}
	})
}
