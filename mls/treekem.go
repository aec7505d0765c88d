package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// Errors reported by TreeKEM processing; match with errors.Is.
var (
	// ErrUpdatePath means an UpdatePath does not fit the tree: wrong number
	// of nodes or ciphertexts, a wrong leaf source, a parent hash that does
	// not match, or a path secret that does not give the advertised key.
	ErrUpdatePath = errors.New("mls: invalid UpdatePath")
	// ErrNoPathSecret means the receiver holds no key that opens any
	// ciphertext of the UpdatePath meant for it.
	ErrNoPathSecret = errors.New("mls: no private key for the UpdatePath")
)

// randomSecret returns n bytes from random (the system's randomness when
// nil).
func randomSecret(random io.Reader, n int) (cipher.Secret, error) {
	if random == nil {
		random = rand.Reader
	}
	b := make(cipher.Secret, n)
	if _, err := io.ReadFull(random, b); err != nil {
		return nil, fmt.Errorf("mls: randomness: %w", err)
	}
	return b, nil
}

// LabelUpdatePathNode is the EncryptWithLabel label of path secrets.
const LabelUpdatePathNode = "UpdatePathNode"

// FilteredDirectPath returns the nodes of leaf l's direct path whose
// copath child has a non-empty resolution, paired with those copath
// children, bottom-up (RFC 9420 section 4.1.2).
func (t *Tree) FilteredDirectPath(l treemath.LeafIndex) (path, copath []treemath.NodeIndex) {
	x := l.NodeIndex()
	var res []treemath.NodeIndex
	for {
		p, ok := treemath.Parent(x, t.leaves)
		if !ok {
			return path, copath
		}
		s, _ := treemath.Sibling(x, t.leaves)
		if res = t.AppendResolution(res[:0], s); len(res) > 0 {
			path = append(path, p)
			copath = append(copath, s)
		}
		x = p
	}
}

// ApplyUpdatePath merges path, sent by leaf sender, into the tree (RFC 9420
// section 7.5): the sender's direct path is blanked, each node of its
// filtered direct path gets the new key and a recomputed parent hash, and
// the sender's leaf is replaced after checking that it has source commit
// and the parent hash the chain requires. Each path node must carry one
// ciphertext per node of its copath child's resolution, leaving out the
// leaves in exclude (those added by the same Commit). The leaf's signature
// is the caller's to check (it covers the group id). The tree keeps a
// pointer to path.LeafNode. On error the tree is left unchanged.
func (t *Tree) ApplyUpdatePath(h Hasher, sender treemath.LeafIndex, path *UpdatePath, exclude []treemath.LeafIndex) error {
	if uint32(sender) >= t.leaves || t.Leaf(sender) == nil {
		return fmt.Errorf("%w: sender leaf %d is blank or outside the tree", ErrUpdatePath, sender)
	}
	if path.LeafNode.Source != LeafNodeSourceCommit {
		return fmt.Errorf("%w: leaf_node_source %d, want commit", ErrUpdatePath, path.LeafNode.Source)
	}
	fdp, copath := t.FilteredDirectPath(sender)
	if len(path.Nodes) != len(fdp) {
		return fmt.Errorf("%w: %d path nodes for a filtered direct path of %d", ErrUpdatePath, len(path.Nodes), len(fdp))
	}
	for i, s := range copath {
		if got, want := len(path.Nodes[i].EncryptedPathSecret), len(t.filteredResolution(s, exclude)); got != want {
			return fmt.Errorf("%w: node %d has %d ciphertexts, want %d", ErrUpdatePath, fdp[i], got, want)
		}
	}
	if err := t.checkFreshKeys(path); err != nil {
		return err
	}
	// Tree hashes of the copath children do not depend on the direct path,
	// so they can be computed before it changes.
	hashes, err := t.TreeHashes(h)
	if err != nil {
		return err
	}
	keys := make([][]byte, len(path.Nodes))
	for i := range path.Nodes {
		keys[i] = path.Nodes[i].EncryptionKey
	}
	restore := t.mergePath(h, hashes, sender, fdp, copath, keys)
	var leafPH []byte
	if len(fdp) > 0 {
		leafPH = t.parentHash(h, hashes, fdp[0], copath[0])
	}
	if !bytes.Equal(path.LeafNode.ParentHash, leafPH) {
		restore()
		return fmt.Errorf("%w: leaf parent_hash does not match the path", ErrUpdatePath)
	}
	t.setNode(sender.NodeIndex(), &Node{Type: NodeTypeLeaf, Leaf: &path.LeafNode})
	return nil
}

// checkFreshKeys verifies that the public keys of path (its leaf's and its
// nodes') are distinct from one another and that none already appears in a
// node of the tree, the committer's current leaf included (RFC 9420
// section 12.4.2). It indexes the path's few new keys rather than the whole
// tree, so the scan allocates nothing per node.
func (t *Tree) checkFreshKeys(path *UpdatePath) error {
	fresh := make(map[string]int, len(path.Nodes)+1)
	fresh[string(path.LeafNode.EncryptionKey)] = -1
	for i := range path.Nodes {
		k := string(path.Nodes[i].EncryptionKey)
		if j, dup := fresh[k]; dup {
			if j < 0 {
				return fmt.Errorf("%w: path node %d repeats the leaf's encryption_key", ErrUpdatePath, i)
			}
			return fmt.Errorf("%w: path nodes %d and %d share an encryption key", ErrUpdatePath, j, i)
		}
		fresh[k] = i
	}
	for _, n := range t.nodes {
		var key []byte
		switch {
		case n == nil:
			continue
		case n.Leaf != nil:
			key = n.Leaf.EncryptionKey
		case n.Parent != nil:
			key = n.Parent.EncryptionKey
		}
		i, ok := fresh[string(key)]
		if !ok {
			continue
		}
		if i < 0 {
			return fmt.Errorf("%w: leaf encryption_key already in the tree", ErrUpdatePath)
		}
		return fmt.Errorf("%w: key of path node %d already in the tree", ErrUpdatePath, i)
	}
	return nil
}

// mergePath blanks leaf sender's direct path and sets the nodes of its
// filtered direct path to keys with freshly computed parent hashes, top
// down. hashes must hold the tree hashes of the copath children. It
// returns a function that puts the direct path back as it was.
func (t *Tree) mergePath(h Hasher, hashes [][]byte, sender treemath.LeafIndex, fdp, copath []treemath.NodeIndex, keys [][]byte) (restore func()) {
	direct := treemath.DirectPath(sender.NodeIndex(), t.leaves)
	saved := make([]*Node, len(direct))
	for i, x := range direct {
		saved[i] = t.nodes[x]
	}
	t.blankDirectPath(sender)
	for i := len(fdp) - 1; i >= 0; i-- {
		var ph []byte
		if i < len(fdp)-1 {
			ph = t.parentHash(h, hashes, fdp[i+1], copath[i+1])
		}
		t.setParent(fdp[i], &ParentNode{EncryptionKey: keys[i], ParentHash: ph})
	}
	return func() {
		for i, x := range direct {
			t.setNode(x, saved[i])
		}
	}
}

// NewUpdatePath is what CreateUpdatePath produces: the UpdatePath to send
// and the secrets the committer keeps.
type NewUpdatePath struct {
	Path *UpdatePath
	// LeafKey is the private key of the committer's new leaf.
	LeafKey *cipher.HPKEPrivateKey
	// PathSecrets holds the path secret of each filtered direct path node.
	PathSecrets []cipher.Secret
	// CommitSecret is the secret the key schedule takes from this path.
	CommitSecret cipher.Secret
	// TreeHash is the tree hash after the path was merged.
	TreeHash []byte
}

// CreateUpdatePath refreshes leaf sender's direct path in the tree (RFC 9420
// sections 7.4 and 7.5) and returns the UpdatePath to send. leaf carries
// the committer's new leaf content (signature key, credential,
// capabilities, extensions); its source, encryption key, parent hash and
// signature are set here, signing with signer over groupID. groupContext
// is called with the tree hash after the merge and returns the encoded
// provisional GroupContext under which the path secrets are encrypted.
// exclude lists the leaves added by the same Commit. random supplies the
// leaf key, the path secret and the HPKE ephemeral keys (nil: the system's
// randomness). On error the tree is left unchanged.
func (t *Tree) CreateUpdatePath(suite *cipher.Suite, sender treemath.LeafIndex, leaf LeafNode, signer *cipher.SignatureKey, groupID []byte, groupContext func(treeHash []byte) ([]byte, error), exclude []treemath.LeafIndex, random io.Reader) (*NewUpdatePath, error) {
	if uint32(sender) >= t.leaves || t.Leaf(sender) == nil {
		return nil, fmt.Errorf("%w: sender leaf %d is blank or outside the tree", ErrUpdatePath, sender)
	}
	fdp, copath := t.FilteredDirectPath(sender)
	hashes, err := t.TreeHashes(suite)
	if err != nil {
		return nil, err
	}
	leafKey, err := suite.GenerateHPKEKeyFrom(random)
	if err != nil {
		return nil, fmt.Errorf("mls: leaf key: %w", err)
	}
	ps, err := randomSecret(random, suite.Nh())
	if err != nil {
		return nil, fmt.Errorf("mls: path secret: %w", err)
	}
	out := &NewUpdatePath{Path: &UpdatePath{Nodes: make([]UpdatePathNode, len(fdp))}, LeafKey: leafKey}
	keys := make([][]byte, len(fdp))
	for i := range fdp {
		if i > 0 {
			if ps, err = NextPathSecret(suite, ps); err != nil {
				return nil, err
			}
		}
		key, err := NodeKey(suite, ps)
		if err != nil {
			return nil, err
		}
		keys[i] = key.PublicKey()
		out.PathSecrets = append(out.PathSecrets, ps)
		out.Path.Nodes[i].EncryptionKey = keys[i]
	}
	if out.CommitSecret, err = NextPathSecret(suite, ps); err != nil {
		return nil, err
	}

	restore := t.mergePath(suite, hashes, sender, fdp, copath, keys)
	oldLeaf := t.nodes[sender.NodeIndex()]
	fail := func(err error) (*NewUpdatePath, error) {
		restore()
		t.setNode(sender.NodeIndex(), oldLeaf)
		return nil, err
	}
	leaf.Source = LeafNodeSourceCommit
	leaf.EncryptionKey = leafKey.PublicKey()
	leaf.Lifetime = Lifetime{}
	leaf.ParentHash = nil
	if len(fdp) > 0 {
		leaf.ParentHash = t.parentHash(suite, hashes, fdp[0], copath[0])
	}
	if err := leaf.Sign(suite, signer, groupID, uint32(sender)); err != nil {
		return fail(err)
	}
	out.Path.LeafNode = leaf
	t.setNode(sender.NodeIndex(), &Node{Type: NodeTypeLeaf, Leaf: &out.Path.LeafNode})
	if out.TreeHash, err = t.TreeHash(suite); err != nil {
		return fail(err)
	}
	ctx, err := groupContext(out.TreeHash)
	if err != nil {
		return fail(err)
	}
	for i, s := range copath {
		for _, r := range t.filteredResolution(s, exclude) {
			var pub []byte
			if n := t.nodes[r]; n.Leaf != nil {
				pub = n.Leaf.EncryptionKey
			} else {
				pub = n.Parent.EncryptionKey
			}
			kem, ct, err := suite.EncryptWithLabelFrom(random, pub, LabelUpdatePathNode, ctx, out.PathSecrets[i])
			if err != nil {
				return fail(fmt.Errorf("mls: encrypt path secret to node %d: %w", r, err))
			}
			out.Path.Nodes[i].EncryptedPathSecret = append(out.Path.Nodes[i].EncryptedPathSecret, HPKECiphertext{KEMOutput: kem, Ciphertext: ct})
		}
	}
	return out, nil
}

// PathSecretLocation says where a receiver finds its path secret in an
// UpdatePath.
type PathSecretLocation struct {
	// PathIndex is the index in UpdatePath.Nodes (and in the filtered
	// direct path) of the node whose path secret is encrypted to the
	// receiver.
	PathIndex int
	// CiphertextIndex is the index of the receiver's ciphertext in that
	// node's encrypted_path_secret list.
	CiphertextIndex int
	// KeyNode is the node of the copath resolution whose private key opens
	// the ciphertext: the receiver's leaf or one of its ancestors.
	KeyNode treemath.NodeIndex
}

// LocatePathSecret finds the ciphertext meant for receiver in an UpdatePath
// from sender. exclude lists the leaves added by the same Commit, which are
// left out of the resolutions (RFC 9420 section 12.4.2). has reports
// whether the receiver holds the private key of a node; the first node of
// the resolution for which it does is chosen.
func (t *Tree) LocatePathSecret(sender, receiver treemath.LeafIndex, exclude []treemath.LeafIndex, has func(treemath.NodeIndex) bool) (PathSecretLocation, error) {
	_, copath := t.FilteredDirectPath(sender)
	rn := receiver.NodeIndex()
	for i, s := range copath {
		if !treemath.InSubtree(rn, s) {
			continue
		}
		res := t.filteredResolution(s, exclude)
		for j, x := range res {
			if treemath.InSubtree(rn, x) && has(x) {
				return PathSecretLocation{PathIndex: i, CiphertextIndex: j, KeyNode: x}, nil
			}
		}
		return PathSecretLocation{}, fmt.Errorf("%w: leaf %d holds no key in the resolution of node %d", ErrNoPathSecret, receiver, s)
	}
	return PathSecretLocation{}, fmt.Errorf("%w: leaf %d is not below the filtered direct path of leaf %d", ErrNoPathSecret, receiver, sender)
}

// filteredResolution is the resolution of x without the leaves in exclude.
func (t *Tree) filteredResolution(x treemath.NodeIndex, exclude []treemath.LeafIndex) []treemath.NodeIndex {
	res := t.Resolution(x)
	if len(exclude) == 0 {
		return res
	}
	out := res[:0]
	for _, n := range res {
		skip := false
		for _, l := range exclude {
			if n == l.NodeIndex() {
				skip = true
				break
			}
		}
		if !skip {
			out = append(out, n)
		}
	}
	return out
}

// CiphertextCount is the number of ciphertexts each node of leaf sender's
// filtered direct path must carry: the size of its copath child's
// resolution without the excluded leaves.
func (t *Tree) CiphertextCount(sender treemath.LeafIndex, exclude []treemath.LeafIndex) []int {
	_, copath := t.FilteredDirectPath(sender)
	counts := make([]int, len(copath))
	for i, s := range copath {
		counts[i] = len(t.filteredResolution(s, exclude))
	}
	return counts
}

// DecryptPathSecret opens the ciphertext at loc with priv, the private key
// of loc.KeyNode, under the provisional group context bytes.
func DecryptPathSecret(suite *cipher.Suite, path *UpdatePath, loc PathSecretLocation, priv *cipher.HPKEPrivateKey, groupContext []byte) (cipher.Secret, error) {
	if loc.PathIndex >= len(path.Nodes) || loc.CiphertextIndex >= len(path.Nodes[loc.PathIndex].EncryptedPathSecret) {
		return nil, fmt.Errorf("%w: no ciphertext at node %d index %d", ErrUpdatePath, loc.PathIndex, loc.CiphertextIndex)
	}
	ct := path.Nodes[loc.PathIndex].EncryptedPathSecret[loc.CiphertextIndex]
	pt, err := suite.DecryptWithLabel(priv, LabelUpdatePathNode, groupContext, ct.KEMOutput, ct.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("mls: path secret: %w", err)
	}
	return cipher.Secret(pt), nil
}

// NodeKey derives the key pair of a node from its path secret (RFC 9420
// section 7.4): DeriveKeyPair(DeriveSecret(path_secret, "node")).
func NodeKey(suite *cipher.Suite, pathSecret []byte) (*cipher.HPKEPrivateKey, error) {
	nodeSecret, err := suite.DeriveSecret(pathSecret, "node")
	if err != nil {
		return nil, err
	}
	defer nodeSecret.Zero()
	return suite.DeriveKeyPair(nodeSecret)
}

// NextPathSecret is DeriveSecret(path_secret, "path"): the path secret of
// the next node up, or the commit secret after the last node.
func NextPathSecret(suite *cipher.Suite, pathSecret []byte) (cipher.Secret, error) {
	return suite.DeriveSecret(pathSecret, "path")
}

// PathSecretsFrom derives, from the path secret of path node first, the
// path secrets of every node above it and the commit secret, checking that
// each derived public key equals the one the UpdatePath advertises. The
// returned slice holds the path secrets of nodes first..len(path.Nodes)-1.
func PathSecretsFrom(suite *cipher.Suite, path *UpdatePath, first int, pathSecret cipher.Secret) (secrets []cipher.Secret, commitSecret cipher.Secret, err error) {
	ps := pathSecret
	for i := first; i < len(path.Nodes); i++ {
		if i > first {
			if ps, err = NextPathSecret(suite, ps); err != nil {
				return nil, nil, err
			}
		}
		key, err := NodeKey(suite, ps)
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(key.PublicKey(), path.Nodes[i].EncryptionKey) {
			return nil, nil, fmt.Errorf("%w: path secret for node %d does not give its public key", ErrUpdatePath, i)
		}
		secrets = append(secrets, ps)
	}
	commitSecret, err = NextPathSecret(suite, ps)
	if err != nil {
		return nil, nil, err
	}
	return secrets, commitSecret, nil
}
