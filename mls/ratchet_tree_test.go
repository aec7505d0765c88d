package mls_test

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/treemath"
)

type treeValidationCase struct {
	CipherSuite vectortest.Uint     `json:"cipher_suite"`
	Tree        vectortest.Hex      `json:"tree"`
	GroupID     vectortest.Hex      `json:"group_id"`
	TreeHashes  []vectortest.Hex    `json:"tree_hashes"`
	Resolutions [][]vectortest.Uint `json:"resolutions"`
}

// hashOnly is the hash of a suite this engine does not implement (4-7), so
// that those trees' structure and hashes are still checked.
type hashOnly func([]byte) []byte

func (h hashOnly) Hash(b []byte) []byte { return h(b) }

func otherSuiteHash(cs uint64) mls.Hasher {
	switch cs {
	case 4, 5, 6:
		return hashOnly(func(b []byte) []byte { s := sha512.Sum512(b); return s[:] })
	case 7:
		return hashOnly(func(b []byte) []byte { s := sha512.Sum384(b); return s[:] })
	}
	return nil
}

func TestTreeValidationVectors(t *testing.T) {
	var cases []treeValidationCase
	vectortest.Load(t, "tree-validation.json", &cases)
	count := vectortest.NewCounter("tree-validation.json")
	for i, tc := range cases {
		cs := uint64(tc.CipherSuite)
		var h mls.Hasher
		suite, err := cipher.New(cipher.CipherSuite(cs))
		group := vectortest.Suite(cs)
		if err == nil {
			h = suite
		} else if h = otherSuiteHash(cs); h != nil {
			group += " (no signatures)"
		} else {
			t.Errorf("case %d: suite %d: %v", i, cs, err)
			continue
		}
		count.Add(group)
		t.Run(fmt.Sprintf("%d_suite%d", i, cs), func(t *testing.T) {
			rt, err := mls.DecodeRatchetTree(tc.Tree)
			if err != nil {
				t.Fatal(err)
			}
			if enc, err := mls.Marshal(rt); err != nil || !bytes.Equal(enc, tc.Tree) {
				t.Fatalf("tree does not re-encode (%v)", err)
			}
			tree, err := mls.NewTree(rt)
			if err != nil {
				t.Fatal(err)
			}
			if int(tree.Width()) != len(tc.Resolutions) || len(tc.TreeHashes) != len(tc.Resolutions) {
				t.Fatalf("width %d, vector has %d resolutions and %d hashes", tree.Width(), len(tc.Resolutions), len(tc.TreeHashes))
			}
			for x, want := range tc.Resolutions {
				got := tree.Resolution(treemath.NodeIndex(x))
				if len(got) != len(want) || !slices.EqualFunc(got, want, func(a treemath.NodeIndex, b vectortest.Uint) bool { return uint64(a) == uint64(b) }) {
					t.Errorf("resolution(%d) = %v, want %v", x, got, want)
				}
			}
			hashes, err := tree.TreeHashes(h)
			if err != nil {
				t.Fatal(err)
			}
			for x, want := range tc.TreeHashes {
				if !bytes.Equal(hashes[x], want) {
					t.Errorf("tree hash of node %d = %x, want %x", x, hashes[x], []byte(want))
				}
			}
			if err := tree.VerifyParentHashes(h); err != nil {
				t.Errorf("parent hashes: %v", err)
			}
			if err := tree.VerifyUnmergedLeaves(); err != nil {
				t.Errorf("unmerged leaves: %v", err)
			}
			if !bytes.Equal(mustMarshal(t, tree.RatchetTree()), tc.Tree) {
				t.Error("truncated form differs from the input")
			}
			if suite == nil {
				return
			}
			ctx := &mls.GroupContext{Version: mls.MLS10, CipherSuite: mls.CipherSuite(cs), GroupID: tc.GroupID,
				TreeHash: hashes[tree.Root()]}
			if err := tree.VerifyIntegrity(suite, ctx, mls.LeafNodeRules{}); err != nil {
				t.Errorf("integrity: %v", err)
			}
			other := *ctx
			other.GroupID = append([]byte{1}, tc.GroupID...)
			if err := tree.VerifyIntegrity(suite, &other, mls.LeafNodeRules{}); len(rt) > 1 && !errors.Is(err, mls.ErrInvalidLeafNode) && !errors.Is(err, cipher.ErrInvalidSignature) {
				t.Errorf("integrity under another group id: %v", err)
			}
			other = *ctx
			other.TreeHash = hashes[0]
			if err := tree.VerifyIntegrity(suite, &other, mls.LeafNodeRules{}); !errors.Is(err, mls.ErrTreeHash) {
				t.Errorf("integrity with a wrong tree hash: %v", err)
			}
			for l := treemath.LeafIndex(0); uint32(l) < tree.LeafCount(); l++ {
				ln := tree.Leaf(l)
				if ln == nil {
					continue
				}
				if err := suite.VerifyWithLabel(ln.SignatureKey, "LeafNodeTBS", ln.TBS(tc.GroupID, uint32(l)), ln.Signature); err != nil {
					t.Errorf("leaf %d signature: %v", l, err)
				}
			}
		})
	}
	count.Check(t, len(cases))
}

func mustMarshal(t *testing.T, v mls.Encoder) []byte {
	t.Helper()
	b, err := mls.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTreeChecksReject alters valid vector trees and checks that each
// alteration is caught by the check meant for it.
func TestTreeChecksReject(t *testing.T) {
	var cases []treeValidationCase
	vectortest.Load(t, "tree-validation.json", &cases)
	suite, err := cipher.New(cipher.CipherSuite(1))
	if err != nil {
		t.Fatal(err)
	}
	// Case 1 (suite 1) is get_tree(4): a full tree whose parents all carry
	// parent hashes.
	load := func(t *testing.T) *mls.Tree {
		rt, err := mls.DecodeRatchetTree(cases[1].Tree)
		if err != nil {
			t.Fatal(err)
		}
		tree, err := mls.NewTree(rt)
		if err != nil {
			t.Fatal(err)
		}
		return tree
	}
	tests := []struct {
		name  string
		alter func(tree *mls.Tree)
		check func(tree *mls.Tree) error
		want  error
	}{
		{"parent key changed", func(tree *mls.Tree) {
			p := tree.Parent(1)
			p.EncryptionKey = append([]byte{}, p.EncryptionKey...)
			p.EncryptionKey[0] ^= 1
		}, func(tree *mls.Tree) error { return tree.VerifyParentHashes(suite) }, mls.ErrParentHash},
		{"root parent hash set", func(tree *mls.Tree) {
			tree.Parent(3).ParentHash = []byte{1}
		}, func(tree *mls.Tree) error { return tree.VerifyParentHashes(suite) }, mls.ErrParentHash},
		{"unmerged leaf outside subtree", func(tree *mls.Tree) {
			tree.Parent(1).UnmergedLeaves = []uint32{3}
		}, func(tree *mls.Tree) error { return tree.VerifyUnmergedLeaves() }, mls.ErrUnmergedLeaves},
		{"unmerged leaves unsorted", func(tree *mls.Tree) {
			tree.Parent(3).UnmergedLeaves = []uint32{2, 1}
		}, func(tree *mls.Tree) error { return tree.VerifyUnmergedLeaves() }, mls.ErrUnmergedLeaves},
		{"unmerged leaf missing below", func(tree *mls.Tree) {
			tree.Parent(3).UnmergedLeaves = []uint32{0}
		}, func(tree *mls.Tree) error { return tree.VerifyUnmergedLeaves() }, mls.ErrUnmergedLeaves},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree := load(t)
			if err := tc.check(tree); err != nil {
				t.Fatalf("unaltered tree rejected: %v", err)
			}
			tc.alter(tree)
			if err := tc.check(tree); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	leaf := &mls.Node{Type: mls.NodeTypeLeaf, Leaf: &mls.LeafNode{}}
	parent := &mls.Node{Type: mls.NodeTypeParent, Parent: &mls.ParentNode{}}
	for name, rt := range map[string]mls.RatchetTree{
		"empty":          {},
		"trailing blank": {leaf, nil, nil},
		"even length":    {leaf, nil},
		"parent at leaf": {parent},
		"leaf at parent": {leaf, leaf, leaf},
	} {
		if _, err := mls.NewTree(rt); !errors.Is(err, mls.ErrInvalidTree) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	tree, err := mls.NewTree(mls.RatchetTree{leaf, nil, leaf, nil, leaf})
	if err != nil || tree.LeafCount() != 4 || tree.Width() != 7 || len(tree.RatchetTree()) != 5 {
		t.Fatalf("extension to full width: %v", err)
	}
}
