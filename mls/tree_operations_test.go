package mls_test

import (
	"bytes"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// TestTreeOperationsVectors applies one Add, Update or Remove to a tree.
// The Update's leaf signature covers a group_id the file does not carry, so
// it is not verified here (see testdata/vectors/SOURCE.md).
func TestTreeOperationsVectors(t *testing.T) {
	var cases []struct {
		CipherSuite    vectortest.Uint `json:"cipher_suite"`
		TreeBefore     vectortest.Hex  `json:"tree_before"`
		TreeHashBefore vectortest.Hex  `json:"tree_hash_before"`
		Proposal       vectortest.Hex  `json:"proposal"`
		ProposalSender vectortest.Uint `json:"proposal_sender"`
		TreeAfter      vectortest.Hex  `json:"tree_after"`
		TreeHashAfter  vectortest.Hex  `json:"tree_hash_after"`
	}
	vectortest.Load(t, "tree-operations.json", &cases)
	count := vectortest.NewCounter("tree-operations.json")
	for i, tc := range cases {
		count.Add(vectortest.Suite(uint64(tc.CipherSuite)))
		suite, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		rt, err := mls.DecodeRatchetTree(tc.TreeBefore)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		tree, err := mls.NewTree(rt)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if h, err := tree.TreeHash(suite); err != nil || !bytes.Equal(h, tc.TreeHashBefore) {
			t.Errorf("case %d: tree hash before %x (%v)", i, h, err)
		}
		var p mls.Proposal
		if err := mls.Unmarshal(tc.Proposal, &p); err != nil {
			t.Fatalf("case %d: proposal: %v", i, err)
		}
		switch p.Type {
		case mls.ProposalAdd:
			tree.AddLeaf(&p.Add.KeyPackage.LeafNode)
		case mls.ProposalUpdate:
			err = tree.UpdateLeaf(treemath.LeafIndex(tc.ProposalSender), &p.Update.LeafNode)
		case mls.ProposalRemove:
			err = tree.RemoveLeaf(treemath.LeafIndex(p.Remove.Removed))
		default:
			t.Fatalf("case %d: proposal type %d", i, p.Type)
		}
		if err != nil {
			t.Fatalf("case %d: apply: %v", i, err)
		}
		if got := mustMarshal(t, tree.RatchetTree()); !bytes.Equal(got, tc.TreeAfter) {
			t.Errorf("case %d (proposal %d): tree after differs", i, p.Type)
		}
		if h, err := tree.TreeHash(suite); err != nil || !bytes.Equal(h, tc.TreeHashAfter) {
			t.Errorf("case %d: tree hash after %x (%v)", i, h, err)
		}
		// The input tree must not have been changed through shared nodes.
		if got := mustMarshal(t, rt); !bytes.Equal(got, tc.TreeBefore) {
			t.Errorf("case %d: applying the proposal changed the decoded input", i)
		}
	}
	count.Check(t, len(cases))
}
