package mls

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

// TestForgedFarFutureMessageInGroup is the review's attack through the
// group API: a member forges a PrivateMessage whose sender data names
// another member at a far-future generation. It is refused, the
// receiver's state is unchanged byte for byte, and every genuine message,
// in or out of order inside the window, still decrypts.
func TestForgedFarFutureMessageInGroup(t *testing.T) {
	_, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	var genuine [][]byte
	for i := range 6 {
		ct, err := alice.g.Protect([]byte{byte(i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		genuine = append(genuine, ct)
	}
	if _, err := bob.g.Unprotect(genuine[1]); err != nil {
		t.Fatal(err)
	}
	// Bob (or any member) knows the sender-data secret and can claim any
	// leaf and generation; without alice's ratchet key the content is junk.
	forge := func(gen uint32) []byte {
		m, err := DecodeMLSMessage(genuine[0])
		if err != nil {
			t.Fatal(err)
		}
		pm := m.PrivateMessage
		pm.Ciphertext = bytes.Repeat([]byte{0x5a}, len(pm.Ciphertext))
		sd, err := Marshal(&SenderData{LeafIndex: 0, Generation: gen})
		if err != nil {
			t.Fatal(err)
		}
		key, nonce, err := secrettree.SenderDataKeyNonce(bob.g.suite, bob.g.st.keys.SenderDataSecret(), pm.Ciphertext)
		if err != nil {
			t.Fatal(err)
		}
		if pm.EncryptedSenderData, err = bob.g.suite.AEADSeal(nil, key, nonce, senderDataAAD(pm.GroupID, pm.Epoch, pm.ContentType), sd); err != nil {
			t.Fatal(err)
		}
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	refusedUnchanged(t, bob.g, forge(999), cipher.ErrDecrypt)
	refusedUnchanged(t, bob.g, forge(4), cipher.ErrDecrypt) // a key already derived, kept for later
	refusedUnchanged(t, bob.g, forge(5000), secrettree.ErrTooFarAhead)
	for _, i := range []int{5, 0, 3, 2, 4} {
		pt, err := bob.g.Unprotect(genuine[i])
		if err != nil || !bytes.Equal(pt, []byte{byte(i)}) {
			t.Fatalf("genuine message %d after the forgeries: %q, %v", i, pt, err)
		}
	}
}

// TestOwnCommitEchoes checks what happens when a member's own messages
// come back from the delivery service, for both handshake wire formats:
// the pending commit merges (Processed.Own), a further copy is
// ErrOwnCommitMerged, its own application message is ErrOwnMessage, and
// none of those refusals changes the state.
func TestOwnCommitEchoes(t *testing.T) {
	for _, wf := range []WireFormat{WireFormatPublicMessage, WireFormatPrivateMessage} {
		t.Run(wf.String(), func(t *testing.T) {
			_, alice, bob := twoMembers(t, GroupConfig{HandshakeWireFormat: wf, RatchetTreeInWelcome: true})
			app, err := alice.g.Protect([]byte("mine"), nil)
			if err != nil {
				t.Fatal(err)
			}
			refusedUnchanged(t, alice.g, app, ErrOwnMessage)
			out, err := alice.g.Commit(CommitOptions{ForcePath: true})
			if err != nil {
				t.Fatal(err)
			}
			p, err := alice.g.ProcessMessage(out.Commit)
			if err != nil || !p.Own || p.NewEpoch != 2 || alice.g.Epoch() != 2 {
				t.Fatalf("own commit echo: %+v, %v (epoch %d)", p, err, alice.g.Epoch())
			}
			deliver(t, out.Commit, bob.g)
			agree(t, alice.g, bob.g)
			refusedUnchanged(t, alice.g, out.Commit, ErrOwnCommitMerged)
			// Merged directly, then echoed.
			out, err = alice.g.Commit(CommitOptions{ForcePath: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := alice.g.MergePendingCommit(); err != nil {
				t.Fatal(err)
			}
			refusedUnchanged(t, alice.g, out.Commit, ErrOwnCommitMerged)
			// A commit this member discarded but the others accepted.
			lost, err := alice.g.Commit(CommitOptions{ForcePath: true})
			if err != nil {
				t.Fatal(err)
			}
			alice.g.DiscardPendingCommit()
			refusedUnchanged(t, alice.g, lost.Commit, ErrOwnMessage)
		})
	}
}

// TestStagedCompetingCommits is the convergence case a harness needs: two
// members commit in the same epoch; a third stages both, inspects them,
// merges one and discards the other; the losing committer stages the
// winner (its own commit is then void) and everyone agrees.
func TestStagedCompetingCommits(t *testing.T) {
	for _, wf := range []WireFormat{WireFormatPublicMessage, WireFormatPrivateMessage} {
		t.Run(wf.String(), func(t *testing.T) {
			cfg := GroupConfig{HandshakeWireFormat: wf, RatchetTreeInWelcome: true}
			suite, alice, bob, carol := threeMembers(t, cfg, cfg, cfg)
			dave := newTestClient(t, suite, "dave")
			kpD, _ := dave.keyPackage(t, suite)
			prop, ref, err := carol.g.ProposeRemove(alice.g.LeafIndex())
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, bob.g, alice.g)
			fromA, err := alice.g.Commit(CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kpD}}}})
			if err != nil {
				t.Fatal(err)
			}
			fromB, err := bob.g.Commit(CommitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			before := mustState(t, carol.g)
			a, err := carol.g.StageCommit(fromA.Commit)
			if err != nil {
				t.Fatal(err)
			}
			b, err := carol.g.StageCommit(fromB.Commit)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustState(t, carol.g), before) {
				t.Fatal("staging changed the group")
			}
			if a.Committer != (Sender{Type: SenderMember, Index: 0}) || len(a.Proposals) != 1 || a.Proposals[0].Proposal.Type != ProposalAdd || a.Proposals[0].Ref != nil {
				t.Fatalf("alice's staged commit: %+v", a)
			}
			if b.Committer.Index != bob.g.LeafIndex() || len(b.Proposals) != 1 || !bytes.Equal(b.Proposals[0].Ref, ref) ||
				b.Proposals[0].Sender.Index != carol.g.LeafIndex() || b.NewEpoch != 2 || b.Removed {
				t.Fatalf("bob's staged commit: %+v", b)
			}
			if _, err := carol.g.StageCommit(prop); !errors.Is(err, ErrNotCommit) {
				t.Fatalf("staging a proposal: %v", err)
			}
			p, err := carol.g.MergeCommit(b)
			if err != nil || p.Sender.Index != bob.g.LeafIndex() || len(p.Proposals) != 1 || p.Proposals[0].Proposal.Type != ProposalRemove {
				t.Fatalf("merging bob's commit: %+v, %v", p, err)
			}
			if _, err := carol.g.MergeCommit(a); !errors.Is(err, ErrStaleCommit) {
				t.Fatalf("merging the loser after the winner: %v", err)
			}
			carol.g.DiscardCommit(a)
			if _, err := carol.g.MergeCommit(b); !errors.Is(err, ErrStaleCommit) {
				t.Fatalf("merging twice: %v", err)
			}
			// Bob's own commit comes back staged as his pending one.
			own, err := bob.g.StageCommit(fromB.Commit)
			if err != nil || !own.Own || own != bob.g.PendingCommit() || own != fromB.Staged {
				t.Fatalf("bob stages his own commit: %+v, %v", own, err)
			}
			if _, err := bob.g.MergeCommit(own); err != nil {
				t.Fatal(err)
			}
			// Alice loses: she is removed by the winner, and her pending
			// commit is void.
			w, err := alice.g.StageCommit(fromB.Commit)
			if err != nil || !w.Removed {
				t.Fatalf("alice stages the winner: %+v, %v", w, err)
			}
			if _, err := alice.g.MergeCommit(w); err != nil || !errors.Is(alice.g.Active(), ErrInactive) {
				t.Fatalf("alice merges her removal: %v, active %v", err, alice.g.Active())
			}
			agree(t, bob.g, carol.g)
		})
	}
}

// TestPastEpochApplicationMessages checks that application messages of
// the last k epochs still decrypt after commits (k = PastEpochs, 5 by
// default), once each, that older ones are ErrWrongEpoch, and that past
// epochs' handshake messages are refused.
func TestPastEpochApplicationMessages(t *testing.T) {
	for _, k := range []int{0, 2} {
		cfg := GroupConfig{RatchetTreeInWelcome: true, PastEpochs: k}
		keep := k
		if keep == 0 {
			keep = DefaultPastEpochs
		}
		_, alice, bob := twoMembers(t, cfg)
		var late [][]byte // late[i] was sent in epoch 1+i
		var props [][]byte
		for range keep + 2 {
			ct, err := alice.g.Protect([]byte("late"), nil)
			if err != nil {
				t.Fatal(err)
			}
			late = append(late, ct)
			prop, _, err := alice.g.ProposeRemove(1)
			if err != nil {
				t.Fatal(err)
			}
			props = append(props, prop)
			alice.g.proposals = nil // not to be committed
			commitAndMerge(t, alice.g, CommitOptions{ForcePath: true}, bob.g)
		}
		// bob is in epoch keep+3; epochs 3..keep+2 are kept.
		for i, ct := range late {
			epoch := uint64(1 + i)
			p, err := bob.g.ProcessMessage(ct)
			kept := epoch+uint64(keep) >= bob.g.Epoch()
			switch {
			case kept && (err != nil || string(p.ApplicationData) != "late" || p.Epoch != epoch):
				t.Fatalf("k=%d: message of epoch %d: %+v, %v", keep, epoch, p, err)
			case !kept && !errors.Is(err, ErrWrongEpoch):
				t.Fatalf("k=%d: message of dropped epoch %d: %v, want ErrWrongEpoch", keep, epoch, err)
			}
			if kept {
				refusedUnchanged(t, bob.g, ct, secrettree.ErrGenerationConsumed)
				refusedUnchanged(t, bob.g, props[i], ErrWrongEpoch)
			}
		}
	}
}

// TestWireFormatPerMessage checks that a member of a PrivateMessage group
// can send one proposal (SelfRemove, as MDK does) or one commit as a
// PublicMessage, and the others accept it.
func TestWireFormatPerMessage(t *testing.T) {
	cfg := GroupConfig{HandshakeWireFormat: WireFormatPrivateMessage, RatchetTreeInWelcome: true}
	_, alice, bob, carol := threeMembers(t, cfg, cfg, cfg)
	prop, _, err := carol.g.Propose(&Proposal{Type: ProposalSelfRemove}, MessageOptions{WireFormat: WireFormatPublicMessage})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := DecodeMLSMessage(prop); err != nil || m.WireFormat != WireFormatPublicMessage {
		t.Fatalf("SelfRemove framed as %v (%v)", m.WireFormat, err)
	}
	deliver(t, prop, alice.g, bob.g)
	out, err := bob.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := DecodeMLSMessage(out.Commit); m.WireFormat != WireFormatPrivateMessage {
		t.Fatalf("default commit framed as %v", m.WireFormat)
	}
	if err := bob.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	deliver(t, out.Commit, alice.g)
	if p, err := carol.g.ProcessMessage(out.Commit); err != nil || !p.Removed {
		t.Fatalf("carol: %+v, %v", p, err)
	}
	pub := commitAndMerge(t, alice.g, CommitOptions{ForcePath: true, WireFormat: WireFormatPublicMessage}, bob.g)
	if m, _ := DecodeMLSMessage(pub.Commit); m.WireFormat != WireFormatPublicMessage {
		t.Fatalf("commit framed as %v", m.WireFormat)
	}
	agree(t, alice.g, bob.g)
	if _, _, err := alice.g.Propose(&Proposal{Type: ProposalSelfRemove}, MessageOptions{WireFormat: WireFormatWelcome}); !errors.Is(err, ErrWireFormat) {
		t.Fatalf("a Welcome wire format for a proposal: %v", err)
	}
}

// seededRun drives a three-member group with every random value drawn
// from seeded readers and returns every message it produced.
func seededRun(t *testing.T, seed uint64, cs CipherSuite) [][]byte {
	t.Helper()
	suite := mustSuite(t, cs)
	reader := func(who uint64) *rand.ChaCha8 {
		var s [32]byte
		s[0], s[1] = byte(seed), byte(who)
		return rand.NewChaCha8(s)
	}
	clients := make([]*testClient, 3)
	cfgs := make([]GroupConfig, 3)
	for i, name := range []string{"alice", "bob", "carol"} {
		sk, err := suite.GenerateSignatureKeyFrom(reader(100 + uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = &testClient{name: name, signer: sk}
		cfgs[i] = GroupConfig{Rand: reader(uint64(i)), RatchetTreeInWelcome: true, HandshakeWireFormat: WireFormatPrivateMessage}
	}
	var out [][]byte
	record := func(b ...[]byte) { out = append(out, b...) }
	var err error
	alice, bob, carol := clients[0], clients[1], clients[2]
	if alice.g, err = CreateGroup(cs, []byte("seeded"), alice.signer, alice.leaf(), nil, cfgs[0]); err != nil {
		t.Fatal(err)
	}
	var adds []Proposal
	var privs []*KeyPackagePrivate
	var kps []*KeyPackage
	for i, c := range []*testClient{bob, carol} {
		lp := c.leaf().withDefaults(cs)
		kp, priv, err := NewKeyPackage(suite, c.signer, KeyPackageParams{Credential: lp.Credential, Capabilities: lp.Capabilities, Rand: reader(10 + uint64(i))})
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}})
		kps, privs = append(kps, kp), append(privs, priv)
	}
	c := commitAndMerge(t, alice.g, CommitOptions{Proposals: adds, ForcePath: true})
	record(c.Commit, c.Welcome)
	for i, m := range []*testClient{bob, carol} {
		if m.g, err = JoinFromWelcome(c.Welcome, kps[i], privs[i], m.signer, JoinOptions{}, cfgs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	app, err := bob.g.Protect([]byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, app, alice.g, carol.g)
	prop, _, err := carol.g.ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, prop, alice.g, bob.g)
	c = commitAndMerge(t, bob.g, CommitOptions{ForcePath: true}, alice.g, carol.g)
	record(app, prop, c.Commit)
	state, err := carol.g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	return append(out, state)
}

// TestSeededRunReproducible checks that a seed makes a whole run
// reproducible byte for byte (KeyPackages, commits with paths, Welcomes,
// application messages, Updates, and the resulting state), in every
// supported suite, and that another seed gives other bytes.
func TestSeededRunReproducible(t *testing.T) {
	for _, cs := range []CipherSuite{1, 2, 3} {
		a, b, other := seededRun(t, 7, cs), seededRun(t, 7, cs), seededRun(t, 8, cs)
		if !slices.EqualFunc(a, b, bytes.Equal) {
			t.Fatalf("suite %d: two runs with one seed differ", cs)
		}
		for i := range a {
			if bytes.Equal(a[i], other[i]) {
				t.Fatalf("suite %d: output %d is the same under another seed", cs, i)
			}
		}
	}
}

// TestStateRoundTrip checks that a group serialized and restored is the
// same group: the bytes round-trip exactly, and the restored copy
// processes the next messages as the original does, including its
// pending commit, stored proposals, Update keys, PSKs and past epochs.
func TestStateRoundTrip(t *testing.T) {
	cfg := GroupConfig{RatchetTreeInWelcome: true, HandshakeWireFormat: WireFormatPrivateMessage}
	suite, alice, bob, carol := threeMembers(t, cfg, cfg, cfg)
	for _, c := range []*testClient{alice, bob, carol} {
		c.g.AddExternalPSK([]byte("psk"), []byte("secret"))
	}
	late, err := alice.g.Protect([]byte("late"), nil)
	if err != nil {
		t.Fatal(err)
	}
	commitAndMerge(t, alice.g, CommitOptions{ForcePath: true}, bob.g, carol.g)
	prop, _, err := bob.g.ProposeUpdate() // bob keeps the new leaf key
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, prop, alice.g, carol.g)
	pskProp, _, err := carol.g.ProposeExternalPSK([]byte("psk"))
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, pskProp, alice.g, bob.g)
	pending, err := carol.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testClient{alice, bob, carol} {
		st := mustState(t, c.g)
		r, err := RestoreGroup(bytes.Clone(st), c.signer, cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if again := mustState(t, r); !bytes.Equal(again, st) {
			t.Fatalf("%s: restored state serializes differently", c.name)
		}
		if c == carol {
			if r.PendingCommit() == nil || !bytes.Equal(r.PendingCommit().Message, pending.Commit) {
				t.Fatal("pending commit not restored")
			}
		}
		// The original and the copy follow the same messages alike.
		for _, g := range []*Group{c.g, r} {
			if c != alice {
				if p, err := g.ProcessMessage(late); err != nil || string(p.ApplicationData) != "late" {
					t.Fatalf("%s: late message of a past epoch: %+v, %v", c.name, p, err)
				}
			}
			p, err := g.ProcessMessage(pending.Commit)
			if err != nil || p.Own != (c == carol) {
				t.Fatalf("%s: pending commit: %+v, %v", c.name, p, err)
			}
		}
		agree(t, c.g, r)
	}
	agree(t, alice.g, bob.g, carol.g)
	if _, err := RestoreGroup(mustState(t, alice.g), bob.signer, cfg); !errors.Is(err, ErrState) {
		t.Fatalf("restoring with another member's key: %v", err)
	}
	_ = suite
}

// TestRejectedPrivateCommitConsumesNothing checks that a PrivateMessage
// commit which decrypts but fails a later check (here its confirmation
// tag) leaves the receiver's state unchanged, its secret tree included:
// the handshake key is consumed only when a commit is merged.
func TestRejectedPrivateCommitConsumesNothing(t *testing.T) {
	_, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true, HandshakeWireFormat: WireFormatPrivateMessage})
	c := &FramedContent{GroupID: bob.g.st.ctx.GroupID, Epoch: bob.g.st.ctx.Epoch, Sender: Sender{Type: SenderMember, Index: bob.g.LeafIndex()},
		ContentType: ContentCommit, Commit: &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefProposal, Proposal: &Proposal{Type: ProposalPSK,
			PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{Type: PSKExternal, PSKID: []byte("none"), PSKNonce: make([]byte, 32)}}}}}}}
	sig, err := SignContent(bob.g.suite, bob.g.signer, WireFormatPrivateMessage, c, &bob.g.st.ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bob.g.frameSigned(WireFormatPrivateMessage, c, &FramedContentAuthData{Signature: sig, ConfirmationTag: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	refusedUnchanged(t, alice.g, forged, ErrUnknownPSK)
	commitAndMerge(t, bob.g, CommitOptions{ForcePath: true}, alice.g)
	agree(t, alice.g, bob.g)
}
