package mls_test

import (
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

func BenchmarkDecodeMLSMessage(b *testing.B) {
	var cases []messagesCase
	vectortest.Load(b, "messages.json", &cases)
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"key_package", cases[0].MLSKeyPackage},
		{"public_commit", cases[0].PublicMessageCommit},
		{"welcome", cases[0].MLSWelcome},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				if _, err := mls.DecodeMLSMessage(bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTreeHashes(b *testing.B) {
	var cases []treeValidationCase
	vectortest.Load(b, "tree-validation.json", &cases)
	tc := cases[11] // suite 1, 64 leaf slots
	rt, err := mls.DecodeRatchetTree(tc.Tree)
	if err != nil {
		b.Fatal(err)
	}
	tree, err := mls.NewTree(rt)
	if err != nil {
		b.Fatal(err)
	}
	suite, err := cipher.New(1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tree.TreeHashes(suite); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTreeHashes1024 hashes a tree of 1,024 members (leaves only,
// blank parents): the floor of a full recomputation at the size the
// Commit-processing target is set for.
func BenchmarkTreeHashes1024(b *testing.B) {
	var cases []treeValidationCase
	vectortest.Load(b, "tree-validation.json", &cases)
	rt, err := mls.DecodeRatchetTree(cases[0].Tree)
	if err != nil {
		b.Fatal(err)
	}
	leaf := rt[0].Leaf
	tree, err := mls.NewTree(mls.RatchetTree{rt[0]})
	if err != nil {
		b.Fatal(err)
	}
	for tree.LeafCount() < 1024 || tree.Leaf(1023) == nil {
		tree.AddLeaf(leaf)
	}
	suite, err := cipher.New(1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tree.TreeHashes(suite); err != nil {
			b.Fatal(err)
		}
	}
}
