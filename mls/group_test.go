package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

// testClient is one simulated client: its signing key and, once joined,
// its group.
type testClient struct {
	name   string
	signer *cipher.SignatureKey
	g      *Group
}

var testCaps = Capabilities{
	Extensions: []ExtensionType{ExtAppDataDictionary},
	Proposals:  []ProposalType{ProposalAppDataUpdate, ProposalSelfRemove},
}

func newTestClient(t testing.TB, suite *cipher.Suite, name string) *testClient {
	t.Helper()
	sk, err := suite.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	return &testClient{name: name, signer: sk}
}

func (c *testClient) leaf() LeafParams {
	return LeafParams{Credential: Credential{Type: CredentialBasic, Identity: []byte(c.name)}, Capabilities: testCaps}
}

// keyPackage makes a fresh KeyPackage for c.
func (c *testClient) keyPackage(t testing.TB, suite *cipher.Suite) (*KeyPackage, *KeyPackagePrivate) {
	t.Helper()
	lp := c.leaf().withDefaults(CipherSuite(suite.ID()))
	kp, priv, err := NewKeyPackage(suite, c.signer, KeyPackageParams{
		Credential: lp.Credential, Capabilities: lp.Capabilities, Lifetime: lp.Lifetime,
	})
	if err != nil {
		t.Fatal(err)
	}
	return kp, priv
}

func mustSuite(t testing.TB, cs CipherSuite) *cipher.Suite {
	t.Helper()
	s, err := newSuite(cs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// agree checks that every group is in the same epoch with the same
// authenticator, exporter output and tree.
func agree(t *testing.T, groups ...*Group) {
	t.Helper()
	first := groups[0]
	want, err := first.Export("test", []byte("ctx"), 32)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range groups[1:] {
		if g.Epoch() != first.Epoch() {
			t.Fatalf("member %d in epoch %d, want %d", i+1, g.Epoch(), first.Epoch())
		}
		if !bytes.Equal(g.EpochAuthenticator(), first.EpochAuthenticator()) {
			t.Fatalf("member %d: epoch authenticator differs", i+1)
		}
		got, err := g.Export("test", []byte("ctx"), 32)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("member %d: exporter differs (%v)", i+1, err)
		}
		if !bytes.Equal(g.st.ctx.TreeHash, first.st.ctx.TreeHash) {
			t.Fatalf("member %d: tree hash differs", i+1)
		}
	}
	// The cached per-node hashes must give what a fresh tree computes.
	for i, g := range groups {
		fresh, err := NewTree(g.Tree())
		if err != nil {
			t.Fatal(err)
		}
		h, err := fresh.TreeHash(g.suite)
		if err != nil || !bytes.Equal(h, g.st.ctx.TreeHash) {
			t.Fatalf("member %d: cached tree hash differs from a fresh computation (%v)", i, err)
		}
	}
}

// deliver has every receiver process msg and fails on error.
func deliver(t testing.TB, msg []byte, receivers ...*Group) {
	t.Helper()
	for i, g := range receivers {
		if _, err := g.ProcessMessage(msg); err != nil {
			t.Fatalf("receiver %d: %v", i, err)
		}
	}
}

// commitAndMerge has g commit, merges it locally and delivers the commit
// to the others.
func commitAndMerge(t testing.TB, g *Group, opts CommitOptions, others ...*Group) *CommitOutput {
	t.Helper()
	out, err := g.Commit(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	deliver(t, out.Commit, others...)
	return out
}

func join(t testing.TB, suite *cipher.Suite, c *testClient, kp *KeyPackage, priv *KeyPackagePrivate, out *CommitOutput, outOfBand bool, cfg GroupConfig) {
	t.Helper()
	opts := JoinOptions{}
	if outOfBand {
		opts.RatchetTree = out.RatchetTree
	}
	g, err := JoinFromWelcome(out.Welcome, kp, priv, c.signer, opts, cfg)
	if err != nil {
		t.Fatalf("%s joins: %v", c.name, err)
	}
	c.g = g
}

// TestGroupLifecycle drives three members through every proposal type,
// both handshake wire formats and both ways of shipping the tree.
func TestGroupLifecycle(t *testing.T) {
	for _, tc := range []struct {
		cs       CipherSuite
		wf       WireFormat
		treeInWl bool
	}{
		{X25519AES128GCMSHA256Ed25519, WireFormatPublicMessage, true},
		{X25519AES128GCMSHA256Ed25519, WireFormatPrivateMessage, false},
		{P256AES128GCMSHA256P256, WireFormatPublicMessage, false},
		{X25519ChaCha20Poly1305SHA256Ed25519, WireFormatPrivateMessage, true},
	} {
		t.Run(fmt.Sprintf("suite%d/wf%d/tree%v", tc.cs, tc.wf, tc.treeInWl), func(t *testing.T) {
			suite := mustSuite(t, tc.cs)
			cfg := GroupConfig{HandshakeWireFormat: tc.wf, RatchetTreeInWelcome: tc.treeInWl, PaddingBlock: 32}
			alice, bob, carol, dave := newTestClient(t, suite, "alice"), newTestClient(t, suite, "bob"), newTestClient(t, suite, "carol"), newTestClient(t, suite, "dave")
			var err error
			alice.g, err = CreateGroup(tc.cs, []byte("group"), alice.signer, alice.leaf(), nil, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if alice.g.Epoch() != 0 || len(alice.g.Members()) != 1 {
				t.Fatalf("new group: epoch %d, %d members", alice.g.Epoch(), len(alice.g.Members()))
			}

			// Add by value.
			kpB, privB := bob.keyPackage(t, suite)
			out := commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kpB}}}})
			join(t, suite, bob, kpB, privB, out, !tc.treeInWl, cfg)
			agree(t, alice.g, bob.g)

			// Add by reference, committed by the other member with a path.
			kpC, privC := carol.keyPackage(t, suite)
			prop, _, err := alice.g.ProposeAdd(kpC)
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, bob.g)
			out = commitAndMerge(t, bob.g, CommitOptions{ForcePath: true}, alice.g)
			join(t, suite, carol, kpC, privC, out, !tc.treeInWl, cfg)
			agree(t, alice.g, bob.g, carol.g)

			// Update by reference: the path of a later commit must reach
			// bob's new leaf key.
			prop, _, err = bob.g.ProposeUpdate()
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, alice.g, carol.g)
			commitAndMerge(t, carol.g, CommitOptions{}, alice.g, bob.g)
			agree(t, alice.g, bob.g, carol.g)
			commitAndMerge(t, alice.g, CommitOptions{ForcePath: true}, bob.g, carol.g)
			agree(t, alice.g, bob.g, carol.g)

			// External PSK.
			for _, c := range []*testClient{alice, bob, carol} {
				c.g.AddExternalPSK([]byte("psk-1"), []byte("shared secret"))
			}
			prop, _, err = bob.g.ProposeExternalPSK([]byte("psk-1"))
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, alice.g, carol.g)
			commitAndMerge(t, alice.g, CommitOptions{}, bob.g, carol.g)
			agree(t, alice.g, bob.g, carol.g)

			// GroupContextExtensions then AppDataUpdate.
			dict, err := NewExtension(ExtAppDataDictionary, &AppDataDictionary{})
			if err != nil {
				t.Fatal(err)
			}
			prop, _, err = carol.g.ProposeGroupContextExtensions(Extensions{dict})
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, alice.g, bob.g)
			commitAndMerge(t, bob.g, CommitOptions{}, alice.g, carol.g)
			agree(t, alice.g, bob.g, carol.g)
			prop, _, err = alice.g.ProposeAppDataUpdate(AppDataUpdate{ComponentID: 7, Op: AppDataOpUpdate, Update: []byte("v1")})
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, bob.g, carol.g)
			commitAndMerge(t, carol.g, CommitOptions{}, alice.g, bob.g)
			agree(t, alice.g, bob.g, carol.g)
			d, _, err := bob.g.Extensions().AppDataDictionary()
			if v, ok := d.Find(7); err != nil || !ok || string(v) != "v1" {
				t.Fatalf("app_data_dictionary component 7 = %q, %v, %v", v, ok, err)
			}

			// Application data both ways.
			ct, err := alice.g.Protect([]byte("hello"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*testClient{bob, carol} {
				pt, err := c.g.Unprotect(ct)
				if err != nil || string(pt) != "hello" {
					t.Fatalf("%s: %q, %v", c.name, pt, err)
				}
			}

			// External join by dave from alice's GroupInfo.
			gi, err := alice.g.GroupInfo(true)
			if err != nil {
				t.Fatal(err)
			}
			dave.g, err = func() (*Group, error) {
				g, msg, err := JoinExternal(gi, dave.signer, dave.leaf(), ExternalJoinOptions{}, cfg)
				if err == nil {
					deliver(t, msg, alice.g, bob.g, carol.g)
				}
				return g, err
			}()
			if err != nil {
				t.Fatal(err)
			}
			agree(t, alice.g, bob.g, carol.g, dave.g)

			// SelfRemove by carol, committed by dave.
			prop, _, err = carol.g.ProposeSelfRemove()
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, alice.g, bob.g, dave.g)
			out, err = dave.g.Commit(CommitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := dave.g.MergePendingCommit(); err != nil {
				t.Fatal(err)
			}
			deliver(t, out.Commit, alice.g, bob.g)
			p, err := carol.g.ProcessMessage(out.Commit)
			if err != nil || !p.Removed {
				t.Fatalf("carol after her removal: %+v, %v", p, err)
			}
			if !errors.Is(carol.g.Active(), ErrInactive) {
				t.Fatalf("carol still active")
			}
			agree(t, alice.g, bob.g, dave.g)

			// Remove by value.
			commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{{Type: ProposalRemove, Remove: &Remove{Removed: dave.g.LeafIndex()}}}}, bob.g)
			agree(t, alice.g, bob.g)
			if n := len(alice.g.Members()); n != 2 {
				t.Fatalf("%d members, want 2", n)
			}

			// ReInit ends the group.
			prop, _, err = bob.g.ProposeReInit(ReInit{GroupID: []byte("group-2"), Version: MLS10, CipherSuite: tc.cs})
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, prop, alice.g)
			commitAndMerge(t, alice.g, CommitOptions{}, bob.g)
			for _, g := range []*Group{alice.g, bob.g} {
				if g.PendingReInit() == nil || !errors.Is(g.Active(), ErrInactive) {
					t.Fatalf("ReInit not recorded")
				}
			}
		})
	}
}

// twoMembers returns a group of alice and bob in epoch 1.
func twoMembers(t testing.TB, cfg GroupConfig) (suite *cipher.Suite, alice, bob *testClient) {
	t.Helper()
	suite = mustSuite(t, X25519AES128GCMSHA256Ed25519)
	alice, bob = newTestClient(t, suite, "alice"), newTestClient(t, suite, "bob")
	var err error
	if alice.g, err = CreateGroup(X25519AES128GCMSHA256Ed25519, []byte("g"), alice.signer, alice.leaf(), nil, cfg); err != nil {
		t.Fatal(err)
	}
	kp, priv := bob.keyPackage(t, suite)
	out := commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}})
	join(t, suite, bob, kp, priv, out, !cfg.RatchetTreeInWelcome, cfg)
	return suite, alice, bob
}

// TestOldEpochKeysDeleted shows that, with no past epochs kept, after a
// commit an application message of the old epoch no longer decrypts, that
// the old secret tree was dropped, and that one generation cannot be
// decrypted twice.
func TestOldEpochKeysDeleted(t *testing.T) {
	_, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true, PastEpochs: -1})
	first, err := alice.g.Protect([]byte("one"), nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := alice.g.Protect([]byte("two"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := bob.g.Unprotect(first); err != nil || string(pt) != "one" {
		t.Fatalf("first message: %q, %v", pt, err)
	}
	if _, err := bob.g.Unprotect(first); !errors.Is(err, secrettree.ErrGenerationConsumed) {
		t.Fatalf("replayed generation: %v, want ErrGenerationConsumed", err)
	}
	oldTree, oldSDS := bob.g.st.secrets, bob.g.st.keys.SenderDataSecret().Clone()
	commitAndMerge(t, alice.g, CommitOptions{ForcePath: true}, bob.g)
	if _, err := bob.g.Unprotect(old); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("old-epoch message: %v, want ErrWrongEpoch", err)
	}
	m, err := DecodeMLSMessage(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecryptPrivateMessage(bob.g.suite, oldTree, oldSDS, m.PrivateMessage); !errors.Is(err, secrettree.ErrDropped) {
		t.Fatalf("old secret tree: %v, want ErrDropped", err)
	}
	if _, err := alice.g.Export("x", nil, 16); err != nil {
		t.Fatal(err)
	}
}

// forge builds a commit message from bob's leaf carrying commit, signed
// and tagged with bob's current keys but with a bogus confirmation tag:
// the checks under test come first.
func forge(t *testing.T, g *Group, commit *Commit) []byte {
	t.Helper()
	c := &FramedContent{GroupID: g.st.ctx.GroupID, Epoch: g.st.ctx.Epoch, Sender: Sender{Type: SenderMember, Index: uint32(g.st.myLeaf)}, ContentType: ContentCommit, Commit: commit}
	sig, err := SignContent(g.suite, g.signer, WireFormatPublicMessage, c, &g.st.ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.frameSigned(WireFormatPublicMessage, c, &FramedContentAuthData{Signature: sig, ConfirmationTag: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommitRejected checks that invalid commits are refused with the
// specific error and leave the receiver's state as it was.
func TestCommitRejected(t *testing.T) {
	suite, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	carol := newTestClient(t, suite, "carol")
	kpC, _ := carol.keyPackage(t, suite)
	add := Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kpC}}
	removeAlice := Proposal{Type: ProposalRemove, Remove: &Remove{Removed: 0}}
	removeBob := Proposal{Type: ProposalRemove, Remove: &Remove{Removed: 1}}
	gce := Proposal{Type: ProposalGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{}}
	reinit := Proposal{Type: ProposalReInit, ReInit: &ReInit{GroupID: []byte("x"), Version: MLS10, CipherSuite: 1}}
	byValue := func(ps ...Proposal) *Commit {
		c := &Commit{}
		for i := range ps {
			c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefProposal, Proposal: &ps[i]})
		}
		return c
	}
	valid, err := bob.g.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	bob.g.DiscardPendingCommit()
	// tamper changes a decoded copy of the valid commit; resign signs the
	// content again and retag recomputes the membership tag, so that the
	// check behind them is reached.
	tamper := func(resign, retag bool, f func(m *MLSMessage)) []byte {
		m, err := DecodeMLSMessage(bytes.Clone(valid.Commit))
		if err != nil {
			t.Fatal(err)
		}
		f(m)
		if resign {
			if m.PublicMessage.Auth.Signature, err = SignContent(bob.g.suite, bob.signer, WireFormatPublicMessage, &m.PublicMessage.Content, &bob.g.st.ctx); err != nil {
				t.Fatal(err)
			}
		}
		if retag {
			if m.PublicMessage.MembershipTag, err = MembershipTag(bob.g.suite, bob.g.st.keys.MembershipKey(), m.PublicMessage, &bob.g.st.ctx); err != nil {
				t.Fatal(err)
			}
		}
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"committer removes itself", forge(t, bob.g, byValue(removeBob)), ErrInvalidProposalList},
		{"two removes of one leaf", forge(t, bob.g, byValue(removeAlice, removeAlice)), ErrInvalidProposalList},
		{"two GroupContextExtensions", forge(t, bob.g, byValue(gce, gce)), ErrInvalidProposalList},
		{"ReInit with another proposal", forge(t, bob.g, byValue(reinit, add)), ErrInvalidProposalList},
		{"same client added twice", forge(t, bob.g, byValue(add, add)), ErrInvalidProposalList},
		{"path missing for a Remove", forge(t, bob.g, byValue(removeAlice)), ErrPathRequired},
		{"empty commit without path", forge(t, bob.g, &Commit{}), ErrPathRequired},
		{"unknown reference", forge(t, bob.g, &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefReference, Reference: make([]byte, 32)}}}), ErrUnknownProposal},
		{"ExternalInit from a member", forge(t, bob.g, byValue(Proposal{Type: ProposalExternalInit, ExternalInit: &ExternalInit{KEMOutput: []byte{1}}})), ErrInvalidProposalList},
		{"bad confirmation tag", forge(t, bob.g, byValue(add)), ErrConfirmationTag},
		{"membership tag", tamper(false, false, func(m *MLSMessage) { m.PublicMessage.MembershipTag[0] ^= 1 }), ErrMembershipTag},
		{"signature", tamper(false, true, func(m *MLSMessage) { m.PublicMessage.Auth.Signature[0] ^= 1 }), cipher.ErrInvalidSignature},
		{"wrong epoch", tamper(true, true, func(m *MLSMessage) { m.PublicMessage.Content.Epoch++ }), ErrWrongEpoch},
		{"wrong group", tamper(true, true, func(m *MLSMessage) { m.PublicMessage.Content.GroupID = []byte("h") }), ErrWrongGroup},
		{"parent hash of the path leaf", tamper(true, true, func(m *MLSMessage) {
			ln := &m.PublicMessage.Content.Commit.Path.LeafNode
			ln.ParentHash[0] ^= 1
			if err := ln.Sign(bob.g.suite, bob.signer, bob.g.GroupID(), 1); err != nil {
				t.Fatal(err)
			}
		}), ErrUpdatePath},
		{"path leaf signature", tamper(true, true, func(m *MLSMessage) {
			ln := &m.PublicMessage.Content.Commit.Path.LeafNode
			ln.Signature[0] ^= 1
		}), ErrInvalidLeafNode},
		{"path ciphertext", tamper(true, true, func(m *MLSMessage) {
			ct := m.PublicMessage.Content.Commit.Path.Nodes[0].EncryptedPathSecret[0].Ciphertext
			ct[0] ^= 1
		}), cipher.ErrDecrypt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusedUnchanged(t, alice.g, tc.msg, tc.want)
		})
	}
	// The untouched commit still applies.
	deliver(t, valid.Commit, alice.g)
	if alice.g.Epoch() != 2 {
		t.Fatalf("epoch %d after the valid commit", alice.g.Epoch())
	}
	if _, err := bob.g.Commit(CommitOptions{Proposals: []Proposal{removeBob}}); !errors.Is(err, ErrInvalidProposalList) {
		t.Fatalf("creating a self-removing commit: %v", err)
	}
}

// TestCommitEchoMerges checks that a member's own commit coming back from
// the delivery service enters the new epoch, like MergePendingCommit.
func TestCommitEchoMerges(t *testing.T) {
	_, alice, bob := twoMembers(t, GroupConfig{})
	out, err := alice.g.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	if alice.g.Epoch() != 1 {
		t.Fatal("Commit changed the epoch before merging")
	}
	deliver(t, out.Commit, alice.g, bob.g)
	agree(t, alice.g, bob.g)
	if err := alice.g.MergePendingCommit(); !errors.Is(err, ErrNoPendingCommit) {
		t.Fatalf("second merge: %v", err)
	}
}

// TestExternalResync checks that a client may rejoin by external commit
// removing its old leaf, and that an external commit removing somebody
// else's leaf is refused.
func TestExternalResync(t *testing.T) {
	suite, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	gi, err := alice.g.GroupInfo(true)
	if err != nil {
		t.Fatal(err)
	}
	mallory := newTestClient(t, suite, "mallory")
	old := bob.g.LeafIndex()
	_, bad, err := JoinExternal(gi, mallory.signer, mallory.leaf(), ExternalJoinOptions{RemoveLeaf: &old}, GroupConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.g.ProcessMessage(bad); !errors.Is(err, ErrCredentialRejected) {
		t.Fatalf("external commit removing another client: %v", err)
	}
	g, msg, err := JoinExternal(gi, bob.signer, bob.leaf(), ExternalJoinOptions{RemoveLeaf: &old}, GroupConfig{})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, msg, alice.g)
	p, err := bob.g.ProcessMessage(msg)
	if err != nil || !p.Removed {
		t.Fatalf("old bob: %+v, %v", p, err)
	}
	agree(t, alice.g, g)
	if n := len(g.Members()); n != 2 {
		t.Fatalf("%d members after resync, want 2", n)
	}
}

// TestCompetingCommits checks that when another member's commit is
// accepted first, this member's unmerged commit is void and the group
// carries on from the winner's epoch; and that a stored proposal to
// remove the committer is left out of its own commit.
func TestCompetingCommits(t *testing.T) {
	_, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	mine, err := alice.g.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	prop, _, err := bob.g.ProposeRemove(alice.g.LeafIndex())
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, prop, alice.g)
	theirs, err := bob.g.Commit(CommitOptions{ForcePath: true, SkipStored: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.g.MergePendingCommit(); err != nil {
		t.Fatal(err)
	}
	deliver(t, theirs.Commit, alice.g)
	agree(t, alice.g, bob.g)
	if _, err := bob.g.ProcessMessage(mine.Commit); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("losing commit: %v, want ErrWrongEpoch", err)
	}
	if err := alice.g.MergePendingCommit(); !errors.Is(err, ErrNoPendingCommit) {
		t.Fatalf("merging the void commit: %v", err)
	}
	prop, _, err = bob.g.ProposeRemove(alice.g.LeafIndex())
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, prop, alice.g)
	commitAndMerge(t, alice.g, CommitOptions{}, bob.g)
	agree(t, alice.g, bob.g)
}

// TestCommitProposalChecks checks the per-proposal rules on the
// committer's side (the receiver runs the same code) and that a refused
// commit leaves no pending state.
func TestCommitProposalChecks(t *testing.T) {
	suite, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	carol := newTestClient(t, suite, "carol")
	kpC, _ := carol.keyPackage(t, suite)
	badSig := *kpC
	badSig.Signature = bytes.Clone(kpC.Signature)
	badSig.Signature[0] ^= 1
	p256 := mustSuite(t, P256AES128GCMSHA256P256)
	other := newTestClient(t, p256, "other")
	kpOther, _ := other.keyPackage(t, p256)
	kpBobAgain, _ := bob.keyPackage(t, suite)
	alice.g.AddExternalPSK([]byte("known"), []byte("k"))
	nonce := make([]byte, suite.Nh())
	psk := func(id []byte, nonce []byte) Proposal {
		return Proposal{Type: ProposalPSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{Type: PSKExternal, PSKID: id, PSKNonce: nonce}}}
	}
	for _, tc := range []struct {
		name string
		p    Proposal
		want error
	}{
		{"KeyPackage signature", Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: badSig}}, ErrInvalidProposal},
		{"KeyPackage of another suite", Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kpOther}}, ErrInvalidProposal},
		{"Add of a current member", Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kpBobAgain}}, ErrInvalidProposalList},
		{"Remove of a blank leaf", Proposal{Type: ProposalRemove, Remove: &Remove{Removed: 5}}, ErrInvalidProposal},
		{"unknown external PSK", psk([]byte("unknown"), nonce), ErrUnknownPSK},
		{"short PSK nonce", psk([]byte("known"), nonce[:4]), ErrInvalidProposal},
		{"unsupported group extension", Proposal{Type: ProposalGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: Extensions{{Type: 0xff00}}}}, ErrInvalidProposal},
		{"AppDataUpdate removing an absent component", Proposal{Type: ProposalAppDataUpdate, AppDataUpdate: &AppDataUpdate{ComponentID: 3, Op: AppDataOpRemove}}, ErrInvalidProposal},
		{"unknown proposal type", Proposal{Type: 0xff01, Unknown: []byte{1}}, ErrInvalidProposal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := alice.g.Commit(CommitOptions{Proposals: []Proposal{tc.p}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if alice.g.pending != nil || alice.g.Epoch() != 1 {
				t.Fatal("a refused commit left state behind")
			}
		})
	}
}

// TestPSKs covers an external PSK in a Welcome and a resumption PSK of the
// previous epoch.
func TestPSKs(t *testing.T) {
	suite, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	for _, g := range []*Group{alice.g, bob.g} {
		g.AddExternalPSK([]byte("ext"), []byte("secret"))
	}
	nonce := make([]byte, suite.Nh())
	carol := newTestClient(t, suite, "carol")
	kpC, privC := carol.keyPackage(t, suite)
	out := commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{
		{Type: ProposalAdd, Add: &Add{KeyPackage: *kpC}},
		{Type: ProposalPSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{Type: PSKExternal, PSKID: []byte("ext"), PSKNonce: nonce}}},
	}}, bob.g)
	if _, err := JoinFromWelcome(out.Welcome, kpC, privC, carol.signer, JoinOptions{}, GroupConfig{}); !errors.Is(err, ErrUnknownPSK) {
		t.Fatalf("join without the PSK: %v", err)
	}
	g, err := JoinFromWelcome(out.Welcome, kpC, privC, carol.signer, JoinOptions{PSKs: []PSKEntry{{ID: []byte("ext"), Secret: []byte("secret")}}}, GroupConfig{})
	if err != nil {
		t.Fatal(err)
	}
	agree(t, alice.g, bob.g, g)
	res := Proposal{Type: ProposalPSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{
		Type: PSKResumption, Usage: ResumptionApplication, PSKGroupID: alice.g.GroupID(), PSKEpoch: alice.g.Epoch() - 1, PSKNonce: nonce,
	}}}
	commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{res}}, bob.g)
	agree(t, alice.g, bob.g)
}
