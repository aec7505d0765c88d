package mls

import (
	"bytes"
	"errors"
	"testing"
)

// TestCheckFreshKeysDuplicates checks that an UpdatePath's encryption keys
// must differ among themselves, not only from the tree's: two path nodes
// with one key, or a node repeating the leaf's key, are refused.
func TestCheckFreshKeysDuplicates(t *testing.T) {
	_, alice, _ := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	tree := alice.g.st.tree
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	for _, tc := range []struct {
		name string
		path UpdatePath
		ok   bool
	}{
		{"distinct", UpdatePath{LeafNode: LeafNode{EncryptionKey: key(1)}, Nodes: []UpdatePathNode{{EncryptionKey: key(2)}, {EncryptionKey: key(3)}}}, true},
		{"two nodes share a key", UpdatePath{LeafNode: LeafNode{EncryptionKey: key(1)}, Nodes: []UpdatePathNode{{EncryptionKey: key(2)}, {EncryptionKey: key(2)}}}, false},
		{"node repeats the leaf key", UpdatePath{LeafNode: LeafNode{EncryptionKey: key(1)}, Nodes: []UpdatePathNode{{EncryptionKey: key(1)}}}, false},
		{"key already in the tree", UpdatePath{LeafNode: LeafNode{EncryptionKey: key(1)}, Nodes: []UpdatePathNode{{EncryptionKey: tree.Leaf(1).EncryptionKey}}}, false},
	} {
		err := tree.checkFreshKeys(&tc.path)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrUpdatePath) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestAppDataDictionaryOrderOnReceipt checks that an app_data_dictionary
// out of component order is refused on receipt: in a
// GroupContextExtensions proposal and in a KeyPackage leaf.
func TestAppDataDictionaryOrderOnReceipt(t *testing.T) {
	suite, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	unsorted, err := NewExtension(ExtAppDataDictionary, &AppDataDictionary{Components: []ComponentData{{ComponentID: 9}, {ComponentID: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	repeated, err := NewExtension(ExtAppDataDictionary, &AppDataDictionary{Components: []ComponentData{{ComponentID: 3}, {ComponentID: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ext := range []Extension{unsorted, repeated} {
		gce := Proposal{Type: ProposalGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: Extensions{ext}}}
		msg := forge(t, bob.g, &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefProposal, Proposal: &gce}}})
		if err := refusedUnchanged(t, alice.g, msg, ErrInvalidProposal); !errors.Is(err, ErrAppDataOrder) {
			t.Fatalf("GroupContextExtensions: %v, want ErrAppDataOrder", err)
		}
		if _, err := alice.g.Commit(CommitOptions{Proposals: []Proposal{gce}}); !errors.Is(err, ErrAppDataOrder) {
			t.Fatalf("committing it: %v", err)
		}
		carol := newTestClient(t, suite, "carol")
		kp, _ := carol.keyPackage(t, suite)
		kp.LeafNode.Extensions = Extensions{ext}
		if err := kp.Sign(suite, carol.signer); err != nil {
			t.Fatal(err)
		}
		if err := VerifyKeyPackage(suite, kp, LeafNodeRules{}); !errors.Is(err, ErrInvalidLeafNode) || !errors.Is(err, ErrAppDataOrder) {
			t.Fatalf("KeyPackage leaf: %v", err)
		}
	}
	if _, err := CreateGroup(X25519AES128GCMSHA256Ed25519, []byte("x"), alice.signer, alice.leaf(), Extensions{unsorted}, GroupConfig{}); !errors.Is(err, ErrAppDataOrder) {
		t.Fatalf("creating a group with it: %v", err)
	}
}

// TestExternalCommitProposals checks the proposals RFC 9420 section
// 12.4.3.2 allows in an external commit: its ExternalInit, one Remove and
// PreSharedKeys; anything else, or a second Remove, is refused.
func TestExternalCommitProposals(t *testing.T) {
	suite, alice, bob := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	alice.g.AddExternalPSK([]byte("psk"), []byte("k"))
	carol := newTestClient(t, suite, "carol")
	kp, _ := carol.keyPackage(t, suite)
	ext := Sender{Type: SenderNewMemberCommit}
	init := storedProposal{proposal: &Proposal{Type: ProposalExternalInit, ExternalInit: &ExternalInit{KEMOutput: []byte{1}}}, sender: ext}
	with := func(ps ...Proposal) []storedProposal {
		list := []storedProposal{init}
		for i := range ps {
			list = append(list, storedProposal{proposal: &ps[i], sender: ext})
		}
		return list
	}
	psk := Proposal{Type: ProposalPSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{Type: PSKExternal, PSKID: []byte("psk"), PSKNonce: make([]byte, 32)}}}
	remove := Proposal{Type: ProposalRemove, Remove: &Remove{Removed: bob.g.LeafIndex()}}
	for _, tc := range []struct {
		name string
		list []storedProposal
		want error
	}{
		{"ExternalInit alone", with(), nil},
		{"with a Remove and a PSK", with(remove, psk), nil},
		{"with an Add", with(Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}), ErrInvalidProposalList},
		{"with GroupContextExtensions", with(Proposal{Type: ProposalGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{}}), ErrInvalidProposalList},
		{"with a ReInit", with(Proposal{Type: ProposalReInit, ReInit: &ReInit{Version: MLS10, CipherSuite: 1}}), ErrInvalidProposalList},
		{"with an AppDataUpdate", with(Proposal{Type: ProposalAppDataUpdate, AppDataUpdate: &AppDataUpdate{ComponentID: 1, Op: AppDataOpUpdate}}), ErrInvalidProposalList},
		{"with two Removes", with(remove, Proposal{Type: ProposalRemove, Remove: &Remove{Removed: 0}}), ErrInvalidProposalList},
		{"without ExternalInit", with()[1:], ErrInvalidProposalList},
	} {
		_, err := alice.g.applyProposals(tc.list, ext, nil)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestCustomProposalRemovedMemberNeedNotSupport checks that a proposal
// type outside the default set must be supported by the members a commit
// keeps, and not by those it removes (RFC 9420 section 12.1).
func TestCustomProposalRemovedMemberNeedNotSupport(t *testing.T) {
	const custom ProposalType = 0xff01
	suite := mustSuite(t, X25519AES128GCMSHA256Ed25519)
	alice, bob, carol := newTestClient(t, suite, "alice"), newTestClient(t, suite, "bob"), newTestClient(t, suite, "carol")
	withCustom := func(c *testClient) LeafParams {
		lp := c.leaf()
		lp.Capabilities.Proposals = append(append([]ProposalType{}, lp.Capabilities.Proposals...), custom)
		return lp
	}
	cfg := GroupConfig{RatchetTreeInWelcome: true}
	var err error
	if alice.g, err = CreateGroup(X25519AES128GCMSHA256Ed25519, []byte("c"), alice.signer, withCustom(alice), nil, cfg); err != nil {
		t.Fatal(err)
	}
	lpB := withCustom(bob).withDefaults(X25519AES128GCMSHA256Ed25519)
	kpB, privB, err := NewKeyPackage(suite, bob.signer, KeyPackageParams{Credential: lpB.Credential, Capabilities: lpB.Capabilities})
	if err != nil {
		t.Fatal(err)
	}
	kpC, _ := carol.keyPackage(t, suite) // carol does not list the custom type
	out := commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kpB}}, {Type: ProposalAdd, Add: &Add{KeyPackage: *kpC}}}})
	join(t, suite, bob, kpB, privB, out, false, cfg)
	p := Proposal{Type: custom, Unknown: []byte{1}}
	if _, err := alice.g.Commit(CommitOptions{Proposals: []Proposal{p}}); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("custom proposal while carol stays: %v", err)
	}
	removeCarol := Proposal{Type: ProposalRemove, Remove: &Remove{Removed: 2}}
	commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{removeCarol, p}}, bob.g)
	agree(t, alice.g, bob.g)
}

// recordingReader is a seeded randomness source that remembers every
// buffer it filled, so a test can check the secrets drawn into them were
// zeroed after use.
type recordingReader struct {
	next byte
	bufs [][]byte
}

func (r *recordingReader) Read(b []byte) (int, error) {
	for i := range b {
		r.next++
		b[i] = r.next | 1
	}
	r.bufs = append(r.bufs, b)
	return len(b), nil
}

// TestCommitZeroesSecrets checks that once a commit with an UpdatePath is
// built, the path secret drawn for it (and the key material derived from
// the random input) is zeroed: every buffer the group's randomness filled
// is all zero afterwards. The commit is a PublicMessage, so no public
// reuse guard is drawn.
func TestCommitZeroesSecrets(t *testing.T) {
	suite, alice, _ := twoMembers(t, GroupConfig{RatchetTreeInWelcome: true})
	r := &recordingReader{}
	alice.g.cfg.Rand = r
	carol := newTestClient(t, suite, "carol")
	kp, _ := carol.keyPackage(t, suite)
	if _, err := alice.g.Commit(CommitOptions{ForcePath: true, Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}}); err != nil {
		t.Fatal(err)
	}
	if len(r.bufs) == 0 {
		t.Fatal("the commit drew no randomness")
	}
	for i, b := range r.bufs {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("random buffer %d (%d bytes) still holds its secret", i, len(b))
		}
	}
	gs := GroupSecrets{JoinerSecret: []byte{1, 2}, PathSecret: &PathSecret{PathSecret: []byte{3}}}
	gs.zero()
	if !bytes.Equal(gs.JoinerSecret, []byte{0, 0}) || gs.PathSecret.PathSecret[0] != 0 {
		t.Error("GroupSecrets.zero left secrets behind")
	}
}
