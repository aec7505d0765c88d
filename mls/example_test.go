package mls_test

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
)

// Example drives a three-member group through the API a harness uses:
// seeded randomness, KeyPackages, an Add commit with a Welcome, a commit
// staged and inspected before it is merged, application messages, its own
// commit coming back, and a member saved and resumed. docs/mls.md shows
// the same code.
func Example() {
	suite, _ := cipher.New(mls.X25519AES128GCMSHA256Ed25519)
	seed := func(b byte) *rand.ChaCha8 { return rand.NewChaCha8([32]byte{b}) }
	type member struct {
		signer *cipher.SignatureKey
		cred   mls.Credential
		g      *mls.Group
	}
	newMember := func(name string, b byte) *member {
		sk, _ := suite.GenerateSignatureKeyFrom(seed(b))
		return &member{signer: sk, cred: mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}}
	}
	alice, bob, carol := newMember("alice", 1), newMember("bob", 2), newMember("carol", 3)
	cfg := func(b byte) mls.GroupConfig {
		return mls.GroupConfig{RatchetTreeInWelcome: true, Rand: seed(b + 10)}
	}

	// Alice creates the group and adds bob and carol by value.
	alice.g, _ = mls.CreateGroup(suite.ID(), []byte("example"), alice.signer, mls.LeafParams{Credential: alice.cred}, nil, cfg(1))
	var adds []mls.Proposal
	keys := map[*member]*mls.KeyPackagePrivate{}
	kps := map[*member]*mls.KeyPackage{}
	for i, m := range []*member{bob, carol} {
		kp, priv, _ := mls.NewKeyPackage(suite, m.signer, mls.KeyPackageParams{Credential: m.cred, Rand: seed(byte(20 + i))})
		kps[m], keys[m] = kp, priv
		adds = append(adds, mls.Proposal{Type: mls.ProposalAdd, Add: &mls.Add{KeyPackage: *kp}})
	}
	out, _ := alice.g.Commit(mls.CommitOptions{Proposals: adds})
	_ = alice.g.MergePendingCommit() // once the delivery service accepted it
	for i, m := range []*member{bob, carol} {
		m.g, _ = mls.JoinFromWelcome(out.Welcome, kps[m], keys[m], m.signer, mls.JoinOptions{}, cfg(byte(2+i)))
	}

	// Bob commits an update of his path; carol stages it, looks, merges.
	out, _ = bob.g.Commit(mls.CommitOptions{ForcePath: true})
	staged, _ := carol.g.StageCommit(out.Commit)
	fmt.Printf("carol stages a commit by leaf %d for epoch %d\n", staged.Committer.Index, staged.NewEpoch)
	_, _ = carol.g.MergeCommit(staged)
	_, _ = alice.g.ProcessMessage(out.Commit)
	p, _ := bob.g.ProcessMessage(out.Commit) // his own commit, echoed back
	fmt.Println("bob's echo merged his pending commit:", p.Own)

	// Chat.
	ct, _ := alice.g.Protect([]byte("hello"), nil)
	for _, m := range []*member{bob, carol} {
		p, _ := m.g.ProcessMessage(ct)
		fmt.Printf("%s reads %q\n", m.cred.Identity, p.ApplicationData)
	}
	_, err := alice.g.ProcessMessage(ct)
	fmt.Println("alice's own message:", errors.Is(err, mls.ErrOwnMessage))

	// Carol stops and resumes.
	state, _ := carol.g.MarshalState()
	carol.g, _ = mls.RestoreGroup(state, carol.signer, cfg(3))
	a, _ := alice.g.Export("example", nil, 16)
	c, _ := carol.g.Export("example", nil, 16)
	fmt.Printf("epoch %d, %d members, same exporter: %v\n", carol.g.Epoch(), len(carol.g.Members()), string(a) == string(c))
	// Output:
	// carol stages a commit by leaf 1 for epoch 2
	// bob's echo merged his pending commit: true
	// bob reads "hello"
	// carol reads "hello"
	// alice's own message: true
	// epoch 2, 3 members, same exporter: true
}
