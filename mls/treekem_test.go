package mls_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/treemath"
)

type treeKEMCase struct {
	CipherSuite             vectortest.Uint `json:"cipher_suite"`
	GroupID                 vectortest.Hex  `json:"group_id"`
	Epoch                   vectortest.Uint `json:"epoch"`
	ConfirmedTranscriptHash vectortest.Hex  `json:"confirmed_transcript_hash"`
	RatchetTree             vectortest.Hex  `json:"ratchet_tree"`
	LeavesPrivate           []struct {
		Index          vectortest.Uint `json:"index"`
		EncryptionPriv vectortest.Hex  `json:"encryption_priv"`
		SignaturePriv  vectortest.Hex  `json:"signature_priv"`
		PathSecrets    []struct {
			Node       vectortest.Uint `json:"node"`
			PathSecret vectortest.Hex  `json:"path_secret"`
		} `json:"path_secrets"`
	} `json:"leaves_private"`
	UpdatePaths []struct {
		Sender        vectortest.Uint  `json:"sender"`
		UpdatePath    vectortest.Hex   `json:"update_path"`
		PathSecrets   []vectortest.Hex `json:"path_secrets"`
		CommitSecret  vectortest.Hex   `json:"commit_secret"`
		TreeHashAfter vectortest.Hex   `json:"tree_hash_after"`
	} `json:"update_paths"`
}

// TestTreeKEMVectors processes every UpdatePath of treekem.json with every
// member's private state: merge, parent hashes, leaf signature, tree hash,
// the decrypted path secret and the commit secret. (The file's other
// direction, generating an UpdatePath, is not implemented yet.)
func TestTreeKEMVectors(t *testing.T) {
	var cases []treeKEMCase
	vectortest.Load(t, "treekem.json", &cases)
	count := vectortest.NewCounter("treekem.json")
	for i, tc := range cases {
		cs := uint64(tc.CipherSuite)
		suite, ok := countedSuite(t, count, cs)
		if !ok {
			continue
		}
		t.Run(fmt.Sprintf("%d_suite%d", i, cs), func(t *testing.T) { runTreeKEMCase(t, suite, &tc) })
	}
	count.Check(t, len(cases))
}

func runTreeKEMCase(t *testing.T, suite *cipher.Suite, tc *treeKEMCase) {
	rt, err := mls.DecodeRatchetTree(tc.RatchetTree)
	if err != nil {
		t.Fatal(err)
	}
	before, err := mls.NewTree(rt)
	if err != nil {
		t.Fatal(err)
	}
	if err := before.VerifyParentHashes(suite); err != nil {
		t.Fatalf("tree before: %v", err)
	}
	if len(tc.UpdatePaths) == 0 || len(tc.LeavesPrivate) == 0 {
		t.Fatal("case without update paths or private leaves")
	}
	decrypted := 0
	for k, up := range tc.UpdatePaths {
		tree, err := mls.NewTree(rt)
		if err != nil {
			t.Fatal(err)
		}
		sender := treemath.LeafIndex(up.Sender)
		var path mls.UpdatePath
		if err := mls.Unmarshal(up.UpdatePath, &path); err != nil {
			t.Fatalf("path %d: %v", k, err)
		}
		if err := tree.ApplyUpdatePath(suite, sender, &path, nil); err != nil {
			t.Fatalf("path %d from %d: %v", k, sender, err)
		}
		leaf := tree.Leaf(sender)
		if err := suite.VerifyWithLabel(leaf.SignatureKey, mls.LabelLeafNodeTBS, leaf.TBS(tc.GroupID, uint32(sender)), leaf.Signature); err != nil {
			t.Errorf("path %d: leaf signature: %v", k, err)
		}
		treeHash, err := tree.TreeHash(suite)
		if err != nil || !bytes.Equal(treeHash, up.TreeHashAfter) {
			t.Fatalf("path %d: tree hash after %x (%v)", k, treeHash, err)
		}
		if err := tree.VerifyParentHashes(suite); err != nil {
			t.Errorf("path %d: tree after: %v", k, err)
		}
		ctx := mls.GroupContext{
			Version: mls.MLS10, CipherSuite: mls.CipherSuite(tc.CipherSuite), GroupID: tc.GroupID,
			Epoch: uint64(tc.Epoch), TreeHash: treeHash, ConfirmedTranscriptHash: tc.ConfirmedTranscriptHash,
		}
		ctxBytes := mustMarshal(t, &ctx)
		for _, lp := range tc.LeavesPrivate {
			receiver := treemath.LeafIndex(lp.Index)
			want := up.PathSecrets[receiver]
			if receiver == sender {
				if want != nil {
					t.Errorf("path %d: sender has a path secret", k)
				}
				continue
			}
			keys := map[treemath.NodeIndex][]byte{}
			for _, ps := range lp.PathSecrets {
				keys[treemath.NodeIndex(ps.Node)] = ps.PathSecret
			}
			loc, err := tree.LocatePathSecret(sender, receiver, nil, func(x treemath.NodeIndex) bool {
				_, ok := keys[x]
				return ok || x == receiver.NodeIndex()
			})
			if err != nil {
				t.Fatalf("path %d, receiver %d: %v", k, receiver, err)
			}
			var priv *cipher.HPKEPrivateKey
			if loc.KeyNode == receiver.NodeIndex() {
				priv, err = suite.ParseHPKEPrivateKey(lp.EncryptionPriv)
			} else {
				priv, err = mls.NodeKey(suite, keys[loc.KeyNode])
			}
			if err != nil {
				t.Fatal(err)
			}
			secret, err := mls.DecryptPathSecret(suite, &path, loc, priv, ctxBytes)
			if err != nil {
				t.Fatalf("path %d, receiver %d: %v", k, receiver, err)
			}
			if !bytes.Equal(secret, want) {
				t.Errorf("path %d, receiver %d: path secret differs", k, receiver)
			}
			_, commitSecret, err := mls.PathSecretsFrom(suite, &path, loc.PathIndex, secret)
			if err != nil {
				t.Fatalf("path %d, receiver %d: %v", k, receiver, err)
			}
			if !bytes.Equal(commitSecret, up.CommitSecret) {
				t.Errorf("path %d, receiver %d: commit secret differs", k, receiver)
			}
			decrypted++
		}
	}
	if decrypted == 0 {
		t.Fatal("no receiver decrypted any path secret")
	}
	runTreeKEMGenerate(t, suite, tc, rt)
}

// receiverKeys returns the node private keys a vector member holds: its
// leaf key and the keys derived from its path secrets.
func receiverKeys(t *testing.T, suite *cipher.Suite, tc *treeKEMCase, member int) map[treemath.NodeIndex]*cipher.HPKEPrivateKey {
	t.Helper()
	lp := tc.LeavesPrivate[member]
	keys := map[treemath.NodeIndex]*cipher.HPKEPrivateKey{}
	leafKey, err := suite.ParseHPKEPrivateKey(lp.EncryptionPriv)
	if err != nil {
		t.Fatal(err)
	}
	keys[treemath.LeafIndex(lp.Index).NodeIndex()] = leafKey
	for _, ps := range lp.PathSecrets {
		k, err := mls.NodeKey(suite, ps.PathSecret)
		if err != nil {
			t.Fatal(err)
		}
		keys[treemath.NodeIndex(ps.Node)] = k
	}
	return keys
}

// runTreeKEMGenerate is the file's other direction: every member with
// private state creates an UpdatePath, and every other such member must
// merge it, decrypt its path secret and reach the same commit secret.
func runTreeKEMGenerate(t *testing.T, suite *cipher.Suite, tc *treeKEMCase, rt mls.RatchetTree) {
	groupContext := func(treeHash []byte) ([]byte, error) {
		return mls.Marshal(&mls.GroupContext{Version: mls.MLS10, CipherSuite: mls.CipherSuite(tc.CipherSuite),
			GroupID: tc.GroupID, Epoch: uint64(tc.Epoch), TreeHash: treeHash, ConfirmedTranscriptHash: tc.ConfirmedTranscriptHash})
	}
	processed := 0
	for si, sp := range tc.LeavesPrivate {
		sender := treemath.LeafIndex(sp.Index)
		tree, err := mls.NewTree(rt)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := suite.ParseSignatureKey(sp.SignaturePriv)
		if err != nil {
			t.Fatal(err)
		}
		leaf := *tree.Leaf(sender)
		if !bytes.Equal(signer.PublicKey(), leaf.SignatureKey) {
			t.Fatalf("member %d: signature key does not match its leaf", sender)
		}
		np, err := tree.CreateUpdatePath(suite, sender, leaf, signer, tc.GroupID, groupContext, nil, nil)
		if err != nil {
			t.Fatalf("member %d: create: %v", sender, err)
		}
		if err := tree.VerifyParentHashes(suite); err != nil {
			t.Errorf("member %d: own tree after the path: %v", sender, err)
		}
		wire, err := mls.Marshal(np.Path)
		if err != nil {
			t.Fatal(err)
		}
		for ri, rp := range tc.LeavesPrivate {
			if ri == si {
				continue
			}
			receiver := treemath.LeafIndex(rp.Index)
			var path mls.UpdatePath
			if err := mls.Unmarshal(wire, &path); err != nil {
				t.Fatal(err)
			}
			rtree, err := mls.NewTree(rt)
			if err != nil {
				t.Fatal(err)
			}
			if err := rtree.ApplyUpdatePath(suite, sender, &path, nil); err != nil {
				t.Fatalf("%d -> %d: apply: %v", sender, receiver, err)
			}
			ln := rtree.Leaf(sender)
			if err := suite.VerifyWithLabel(ln.SignatureKey, mls.LabelLeafNodeTBS, ln.TBS(tc.GroupID, uint32(sender)), ln.Signature); err != nil {
				t.Errorf("%d -> %d: leaf signature: %v", sender, receiver, err)
			}
			th, err := rtree.TreeHash(suite)
			if err != nil || !bytes.Equal(th, np.TreeHash) {
				t.Fatalf("%d -> %d: tree hashes differ (%v)", sender, receiver, err)
			}
			keys := receiverKeys(t, suite, tc, ri)
			loc, err := rtree.LocatePathSecret(sender, receiver, nil, func(x treemath.NodeIndex) bool { return keys[x] != nil })
			if err != nil {
				t.Fatalf("%d -> %d: %v", sender, receiver, err)
			}
			ctx, _ := groupContext(th)
			secret, err := mls.DecryptPathSecret(suite, &path, loc, keys[loc.KeyNode], ctx)
			if err != nil {
				t.Fatalf("%d -> %d: %v", sender, receiver, err)
			}
			if !bytes.Equal(secret, np.PathSecrets[loc.PathIndex]) {
				t.Errorf("%d -> %d: path secret differs", sender, receiver)
			}
			_, commit, err := mls.PathSecretsFrom(suite, &path, loc.PathIndex, secret)
			if err != nil || !bytes.Equal(commit, np.CommitSecret) {
				t.Errorf("%d -> %d: commit secret differs (%v)", sender, receiver, err)
			}
			processed++
		}
	}
	if len(tc.LeavesPrivate) > 1 && processed == 0 {
		t.Fatal("no generated path was processed")
	}
}

func TestApplyUpdatePathRejects(t *testing.T) {
	var cases []treeKEMCase
	vectortest.Load(t, "treekem.json", &cases)
	suite, err := cipher.New(1)
	if err != nil {
		t.Fatal(err)
	}
	// Find a suite-1 case whose first path has at least two nodes.
	var tc *treeKEMCase
	for i := range cases {
		if cases[i].CipherSuite == 1 && len(cases[i].UpdatePaths[0].UpdatePath) > 0 {
			var p mls.UpdatePath
			if mls.Unmarshal(cases[i].UpdatePaths[0].UpdatePath, &p) == nil && len(p.Nodes) >= 2 {
				tc = &cases[i]
				break
			}
		}
	}
	if tc == nil {
		t.Fatal("no suitable case")
	}
	up := tc.UpdatePaths[0]
	tests := []struct {
		name  string
		alter func(tree *mls.Tree, p *mls.UpdatePath)
	}{
		{"unaltered", func(*mls.Tree, *mls.UpdatePath) {}},
		{"node missing", func(_ *mls.Tree, p *mls.UpdatePath) { p.Nodes = p.Nodes[:len(p.Nodes)-1] }},
		{"ciphertext missing", func(_ *mls.Tree, p *mls.UpdatePath) { p.Nodes[0].EncryptedPathSecret = nil }},
		{"top key changed", func(_ *mls.Tree, p *mls.UpdatePath) {
			n := &p.Nodes[len(p.Nodes)-1]
			n.EncryptionKey = append([]byte{}, n.EncryptionKey...)
			n.EncryptionKey[0] ^= 1
		}},
		{"leaf parent hash changed", func(_ *mls.Tree, p *mls.UpdatePath) { p.LeafNode.ParentHash = []byte{1} }},
		{"leaf key reused", func(tree *mls.Tree, p *mls.UpdatePath) {
			p.LeafNode.EncryptionKey = tree.Leaf(treemath.LeafIndex(up.Sender)).EncryptionKey
		}},
		{"path key reused", func(tree *mls.Tree, p *mls.UpdatePath) {
			for l := treemath.LeafIndex(0); uint32(l) < tree.LeafCount(); l++ {
				if ln := tree.Leaf(l); ln != nil && l != treemath.LeafIndex(up.Sender) {
					p.Nodes[0].EncryptionKey = ln.EncryptionKey
					return
				}
			}
			panic("no other member in the tree")
		}},
		{"leaf source update", func(_ *mls.Tree, p *mls.UpdatePath) { p.LeafNode.Source = mls.LeafNodeSourceUpdate }},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			rt, err := mls.DecodeRatchetTree(tc.RatchetTree)
			if err != nil {
				t.Fatal(err)
			}
			tree, err := mls.NewTree(rt)
			if err != nil {
				t.Fatal(err)
			}
			hashBefore, err := tree.TreeHash(suite)
			if err != nil {
				t.Fatal(err)
			}
			var p mls.UpdatePath
			if err := mls.Unmarshal(up.UpdatePath, &p); err != nil {
				t.Fatal(err)
			}
			c.alter(tree, &p)
			err = tree.ApplyUpdatePath(suite, treemath.LeafIndex(up.Sender), &p, nil)
			if c.name == "unaltered" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, mls.ErrUpdatePath) {
				t.Fatalf("got %v, want ErrUpdatePath", err)
			}
			if h, err := tree.TreeHash(suite); err != nil || !bytes.Equal(h, hashBefore) {
				t.Fatalf("rejected path changed the tree (%v)", err)
			}
		})
	}
}
