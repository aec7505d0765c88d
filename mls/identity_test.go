package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// mustState serializes g's state.
func mustState(t testing.TB, g *Group) []byte {
	t.Helper()
	b, err := g.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refusedUnchanged processes msg at g, expects an error matching want,
// and checks that g's state is byte for byte what it was.
func refusedUnchanged(t *testing.T, g *Group, msg []byte, want error) error {
	t.Helper()
	before := mustState(t, g)
	_, err := g.ProcessMessage(msg)
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	if !bytes.Equal(mustState(t, g), before) {
		t.Fatal("a refused message changed the group state")
	}
	return err
}

// threeMembers returns alice, bob and carol in one group, each with its
// own configuration.
func threeMembers(t testing.TB, cfgA, cfgB, cfgC GroupConfig) (suite *cipher.Suite, alice, bob, carol *testClient) {
	t.Helper()
	suite = mustSuite(t, X25519AES128GCMSHA256Ed25519)
	alice, bob, carol = newTestClient(t, suite, "alice"), newTestClient(t, suite, "bob"), newTestClient(t, suite, "carol")
	var err error
	if alice.g, err = CreateGroup(X25519AES128GCMSHA256Ed25519, []byte("g3"), alice.signer, alice.leaf(), nil, cfgA); err != nil {
		t.Fatal(err)
	}
	kpB, privB := bob.keyPackage(t, suite)
	kpC, privC := carol.keyPackage(t, suite)
	out := commitAndMerge(t, alice.g, CommitOptions{Proposals: []Proposal{
		{Type: ProposalAdd, Add: &Add{KeyPackage: *kpB}}, {Type: ProposalAdd, Add: &Add{KeyPackage: *kpC}},
	}})
	cfgB.RatchetTreeInWelcome, cfgC.RatchetTreeInWelcome = cfgA.RatchetTreeInWelcome, cfgA.RatchetTreeInWelcome
	join(t, suite, bob, kpB, privB, out, !cfgA.RatchetTreeInWelcome, cfgB)
	join(t, suite, carol, kpC, privC, out, !cfgA.RatchetTreeInWelcome, cfgC)
	return suite, alice, bob, carol
}

// refuse returns a validator refusing the identity name, recording every
// check it sees.
func refuse(name string, seen *[]CredentialCheck) CredentialValidator {
	return func(c CredentialCheck) error {
		*seen = append(*seen, c)
		if string(c.Leaf.Credential.Identity) == name {
			return fmt.Errorf("%s is not welcome", name)
		}
		return DefaultCredentialValidator(c)
	}
}

// acceptAll accepts every credential, successor or not: the behaviour of
// a careless peer, so that the other members' checks can be tested.
func acceptAll(CredentialCheck) error { return nil }

// TestCredentialValidatorPaths drives one refused leaf through every path
// the credential validator guards: an Add's KeyPackage, an Update, a
// committer's path leaf, an external join, and the tree of a group being
// joined. Each commit is refused with ErrCredentialRejected (a
// *CredentialError naming the path) and the receiver's state is
// unchanged, byte for byte.
func TestCredentialValidatorPaths(t *testing.T) {
	var seen []CredentialCheck
	strict := GroupConfig{RatchetTreeInWelcome: true, CredentialValidator: refuse("mallory", &seen)}
	careless := GroupConfig{RatchetTreeInWelcome: true, CredentialValidator: acceptAll}
	suite, alice, bob, carol := threeMembers(t, strict, careless, careless)
	var ce *CredentialError

	t.Run("add", func(t *testing.T) {
		mallory := newTestClient(t, suite, "mallory")
		kp, _ := mallory.keyPackage(t, suite)
		out, err := bob.g.Commit(CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer bob.g.DiscardPendingCommit()
		err = refusedUnchanged(t, alice.g, out.Commit, ErrCredentialRejected)
		if !errors.As(err, &ce) || ce.Change != LeafAdded || ce.LeafIndex != 3 {
			t.Fatalf("error %v, want a CredentialError for the added leaf 3", err)
		}
	})

	t.Run("update", func(t *testing.T) {
		// Bob proposes an Update whose credential names carol: the
		// default successor rule refuses it.
		cur := bob.g.st.tree.Leaf(bob.g.st.myLeaf)
		key, err := suite.GenerateHPKEKey()
		if err != nil {
			t.Fatal(err)
		}
		ln := LeafNode{EncryptionKey: key.PublicKey(), SignatureKey: cur.SignatureKey, Credential: Credential{Type: CredentialBasic, Identity: []byte("carol")},
			Capabilities: cur.Capabilities, Source: LeafNodeSourceUpdate, Extensions: cur.Extensions}
		if err := ln.Sign(suite, bob.signer, bob.g.GroupID(), bob.g.LeafIndex()); err != nil {
			t.Fatal(err)
		}
		prop, _, err := bob.g.Propose(&Proposal{Type: ProposalUpdate, Update: &Update{LeafNode: ln}}, MessageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, prop, alice.g, carol.g)
		out, err := carol.g.Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer carol.g.DiscardPendingCommit()
		err = refusedUnchanged(t, alice.g, out.Commit, ErrCredentialRejected)
		if !errors.As(err, &ce) || ce.Change != LeafUpdated || ce.LeafIndex != bob.g.LeafIndex() {
			t.Fatalf("error %v, want a CredentialError for bob's updated leaf", err)
		}
	})
	// The refused Update stays stored at alice; a clean epoch follows.
	out := commitAndMerge(t, alice.g, CommitOptions{ForcePath: true, SkipStored: true}, bob.g, carol.g)
	_ = out

	t.Run("commit path", func(t *testing.T) {
		// A copy of bob whose own leaf names mallory commits with a path:
		// its path leaf then carries mallory's name, signed by bob's key.
		copyB, err := RestoreGroup(mustState(t, bob.g), bob.signer, careless)
		if err != nil {
			t.Fatal(err)
		}
		l := copyB.st.myLeaf
		forged := *copyB.st.tree.Leaf(l)
		forged.Credential = Credential{Type: CredentialBasic, Identity: []byte("bob-renamed")}
		copyB.st.tree.setNode(l.NodeIndex(), &Node{Type: NodeTypeLeaf, Leaf: &forged})
		out, err := copyB.Commit(CommitOptions{ForcePath: true})
		if err != nil {
			t.Fatal(err)
		}
		err = refusedUnchanged(t, alice.g, out.Commit, ErrCredentialRejected)
		if !errors.As(err, &ce) || ce.Change != LeafCommitted || ce.LeafIndex != bob.g.LeafIndex() {
			t.Fatalf("error %v, want a CredentialError for bob's path leaf", err)
		}
	})

	t.Run("external join", func(t *testing.T) {
		gi, err := bob.g.GroupInfo(true)
		if err != nil {
			t.Fatal(err)
		}
		mallory := newTestClient(t, suite, "mallory")
		_, msg, err := JoinExternal(gi, mallory.signer, mallory.leaf(), ExternalJoinOptions{}, careless)
		if err != nil {
			t.Fatal(err)
		}
		err = refusedUnchanged(t, alice.g, msg, ErrCredentialRejected)
		if !errors.As(err, &ce) || ce.Change != LeafExternalJoin {
			t.Fatalf("error %v, want a CredentialError for the external joiner", err)
		}
		// A resynchronising external commit that names another client is
		// refused by the default successor rule.
		old := carol.g.LeafIndex()
		dave := newTestClient(t, suite, "dave")
		_, msg, err = JoinExternal(gi, dave.signer, dave.leaf(), ExternalJoinOptions{RemoveLeaf: &old}, careless)
		if err != nil {
			t.Fatal(err)
		}
		if err := refusedUnchanged(t, alice.g, msg, ErrCredentialRejected); !errors.As(err, &ce) || ce.Change != LeafExternalJoin {
			t.Fatalf("resync under another name: %v", err)
		}
	})

	t.Run("join", func(t *testing.T) {
		mallory := newTestClient(t, suite, "mallory")
		kp, priv := mallory.keyPackage(t, suite)
		out, err := bob.g.Commit(CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer bob.g.DiscardPendingCommit()
		var joinerSaw []CredentialCheck
		_, err = JoinFromWelcome(out.Welcome, kp, priv, mallory.signer, JoinOptions{}, GroupConfig{CredentialValidator: refuse("carol", &joinerSaw)})
		if !errors.Is(err, ErrCredentialRejected) || !errors.As(err, &ce) || ce.Change != LeafInTree || ce.LeafIndex != carol.g.LeafIndex() {
			t.Fatalf("joining a tree with a refused member: %v", err)
		}
		seen = append(seen, joinerSaw...)
	})

	// The validator saw each path with the leaf it replaces.
	want := map[LeafChange]bool{}
	for _, c := range seen {
		if (c.Change == LeafUpdated || c.Change == LeafCommitted) && c.Previous == nil {
			t.Errorf("%v check without the previous leaf", c.Change)
		}
		want[c.Change] = true
	}
	for _, ch := range []LeafChange{LeafAdded, LeafUpdated, LeafCommitted, LeafExternalJoin, LeafInTree} {
		if !want[ch] {
			t.Errorf("validator never called for %v", ch)
		}
	}
	agree(t, alice.g, bob.g, carol.g)
}

// TestDefaultCredentialValidator checks the successor rule of RFC 9420
// section 5.3.1 as the default validator applies it.
func TestDefaultCredentialValidator(t *testing.T) {
	basic := func(id string) *LeafNode {
		return &LeafNode{Credential: Credential{Type: CredentialBasic, Identity: []byte(id)}}
	}
	x509 := func(cert string) *LeafNode {
		return &LeafNode{Credential: Credential{Type: CredentialX509, Certificates: [][]byte{[]byte(cert)}}}
	}
	for _, tc := range []struct {
		name       string
		prev, next *LeafNode
		ok         bool
	}{
		{"new member", nil, basic("x"), true},
		{"same identity", basic("bob"), basic("bob"), true},
		{"identity changed", basic("bob"), basic("alice"), false},
		{"type changed", basic("bob"), x509("bob"), false},
		{"same certificate", x509("c"), x509("c"), true},
		{"certificate changed", x509("c"), x509("d"), false},
	} {
		err := DefaultCredentialValidator(CredentialCheck{Change: LeafUpdated, Leaf: tc.next, Previous: tc.prev})
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
