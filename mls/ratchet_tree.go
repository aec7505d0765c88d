package mls

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// Errors reported by ratchet tree checks; match with errors.Is.
var (
	// ErrInvalidTree means a ratchet tree is malformed: empty, ending in a
	// blank node, of even length, or with a node of the wrong type for its
	// position.
	ErrInvalidTree = errors.New("mls: invalid ratchet tree")
	// ErrParentHash means a non-blank parent node is not parent-hash valid
	// (RFC 9420 section 7.9.2).
	ErrParentHash = errors.New("mls: parent hash check failed")
	// ErrUnmergedLeaves means an unmerged_leaves list breaks the rules of
	// RFC 9420 section 7.1 and 12.4.3.1.
	ErrUnmergedLeaves = errors.New("mls: invalid unmerged leaves")
)

// Hasher is a cipher suite's hash function; *cipher.Suite satisfies it.
type Hasher interface {
	Hash(data []byte) []byte
}

// Tree is a ratchet tree held at full width: 2^d leaves and 2^(d+1)-1
// nodes, a nil entry being a blank node (RFC 9420 sections 4 and 7).
type Tree struct {
	nodes  []*Node
	leaves uint32
	// hashes, when non-nil, caches the tree hash of every node; a nil
	// entry is stale. Only trees a Group owns use it (see cacheHashes):
	// their nodes are never changed except through setNode.
	hashes [][]byte
}

// setNode replaces node x and marks the cached hashes of x and its
// ancestors stale.
func (t *Tree) setNode(x treemath.NodeIndex, n *Node) {
	t.nodes[x] = n
	if t.hashes == nil {
		return
	}
	for {
		t.hashes[x] = nil
		p, ok := treemath.Parent(x, t.leaves)
		if !ok {
			return
		}
		x = p
	}
}

// NewTree builds a Tree from the array form carried in a ratchet_tree
// extension. It checks what RFC 9420 section 12.4.3.3 requires of that form
// (non-empty, last node non-blank, odd length) and that leaves sit at even
// and parents at odd indices, then extends the tree to full width. The nodes
// are shared with rt, not copied.
func NewTree(rt RatchetTree) (*Tree, error) {
	if len(rt) == 0 {
		return nil, fmt.Errorf("%w: no nodes", ErrInvalidTree)
	}
	if rt[len(rt)-1] == nil {
		return nil, fmt.Errorf("%w: last node is blank", ErrInvalidTree)
	}
	if len(rt)%2 == 0 {
		return nil, fmt.Errorf("%w: even number of nodes (%d)", ErrInvalidTree, len(rt))
	}
	if uint64(len(rt)) > 1<<31 {
		return nil, fmt.Errorf("%w: %d nodes", ErrInvalidTree, len(rt))
	}
	leaves := uint32(1)
	for treemath.NodeWidth(leaves) < uint32(len(rt)) {
		leaves *= 2
	}
	nodes := make([]*Node, treemath.NodeWidth(leaves))
	for i, n := range rt {
		if n == nil {
			continue
		}
		wantLeaf := i%2 == 0
		if (n.Type == NodeTypeLeaf) != wantLeaf || (wantLeaf && n.Leaf == nil) || (!wantLeaf && n.Parent == nil) {
			return nil, fmt.Errorf("%w: node %d has type %d", ErrInvalidTree, i, n.Type)
		}
		nodes[i] = n
	}
	return &Tree{nodes: nodes, leaves: leaves}, nil
}

// LeafCount is the number of leaf slots (a power of two).
func (t *Tree) LeafCount() uint32 { return t.leaves }

// Width is the number of nodes.
func (t *Tree) Width() uint32 { return uint32(len(t.nodes)) }

// Root is the root node index.
func (t *Tree) Root() treemath.NodeIndex { return treemath.Root(t.leaves) }

// Node returns node x, or nil when it is blank or outside the tree.
func (t *Tree) Node(x treemath.NodeIndex) *Node {
	if uint64(x) >= uint64(len(t.nodes)) {
		return nil
	}
	return t.nodes[x]
}

// Leaf returns the LeafNode at leaf l, or nil when it is blank.
func (t *Tree) Leaf(l treemath.LeafIndex) *LeafNode {
	if n := t.Node(l.NodeIndex()); n != nil {
		return n.Leaf
	}
	return nil
}

// Parent returns the ParentNode at node x, or nil when it is blank.
func (t *Tree) Parent(x treemath.NodeIndex) *ParentNode {
	if n := t.Node(x); n != nil {
		return n.Parent
	}
	return nil
}

// RatchetTree returns the array form with trailing blank nodes removed, as
// the ratchet_tree extension carries it.
func (t *Tree) RatchetTree() RatchetTree {
	end := len(t.nodes)
	for end > 0 && t.nodes[end-1] == nil {
		end--
	}
	return RatchetTree(slices.Clone(t.nodes[:end]))
}

// AppendResolution appends the resolution of node x (RFC 9420 section
// 4.1.1) to dst: x itself followed by its unmerged leaves when x is not
// blank, otherwise the resolutions of its children, left first.
func (t *Tree) AppendResolution(dst []treemath.NodeIndex, x treemath.NodeIndex) []treemath.NodeIndex {
	n := t.Node(x)
	if n != nil {
		dst = append(dst, x)
		if n.Parent != nil {
			for _, l := range n.Parent.UnmergedLeaves {
				dst = append(dst, treemath.LeafIndex(l).NodeIndex())
			}
		}
		return dst
	}
	if x.IsLeaf() {
		return dst
	}
	l, _ := treemath.Left(x)
	r, _ := treemath.Right(x)
	dst = t.AppendResolution(dst, l)
	return t.AppendResolution(dst, r)
}

// Resolution returns the resolution of node x.
func (t *Tree) Resolution(x treemath.NodeIndex) []treemath.NodeIndex {
	return t.AppendResolution(nil, x)
}

// leafHashInput encodes the TreeHashInput of leaf node x.
func (t *Tree) leafHashInput(w *codec.Writer, x treemath.NodeIndex, blank bool) {
	w.U8(uint8(NodeTypeLeaf))
	w.U32(uint32(x.LeafIndex()))
	ln := t.Leaf(x.LeafIndex())
	if blank || ln == nil {
		w.Present(false)
		return
	}
	w.Present(true)
	ln.EncodeTo(w)
}

// parentHashInput encodes the TreeHashInput of parent node x, leaving out
// the unmerged leaves listed in exclude.
func (t *Tree) parentHashInput(w *codec.Writer, x treemath.NodeIndex, left, right []byte, exclude []uint32) {
	w.U8(uint8(NodeTypeParent))
	p := t.Parent(x)
	w.Present(p != nil)
	if p != nil {
		w.Opaque(p.EncryptionKey)
		w.Opaque(p.ParentHash)
		m := w.OpenVector()
		for _, l := range p.UnmergedLeaves {
			if !slices.Contains(exclude, l) {
				w.U32(l)
			}
		}
		w.CloseVector(m)
	}
	w.Opaque(left)
	w.Opaque(right)
}

// TreeHashes returns the tree hash of every node (RFC 9420 section 7.8),
// indexed by node index, computed bottom-up with one encoding buffer.
func (t *Tree) TreeHashes(h Hasher) ([][]byte, error) {
	hashes := t.hashes
	if hashes == nil {
		hashes = make([][]byte, len(t.nodes))
	}
	var w codec.Writer
	for x := 0; x < len(t.nodes); x += 2 {
		if hashes[x] != nil {
			continue
		}
		w.Reset()
		t.leafHashInput(&w, treemath.NodeIndex(x), false)
		if err := w.Err(); err != nil {
			return nil, fmt.Errorf("tree hash of node %d: %w", x, err)
		}
		hashes[x] = h.Hash(w.Bytes())
	}
	root := treemath.Root(t.leaves)
	for level := uint(1); level <= treemath.Level(root); level++ {
		// Nodes at this level are 2^level - 1 plus multiples of 2^(level+1).
		for x := (1 << level) - 1; x < len(t.nodes); x += 1 << (level + 1) {
			if hashes[x] != nil {
				continue
			}
			l, _ := treemath.Left(treemath.NodeIndex(x))
			r, _ := treemath.Right(treemath.NodeIndex(x))
			w.Reset()
			t.parentHashInput(&w, treemath.NodeIndex(x), hashes[l], hashes[r], nil)
			if err := w.Err(); err != nil {
				return nil, fmt.Errorf("tree hash of node %d: %w", x, err)
			}
			hashes[x] = h.Hash(w.Bytes())
		}
	}
	if t.hashes != nil {
		// Callers keep the result while the tree changes; give them a
		// snapshot, not the cache.
		return slices.Clone(hashes), nil
	}
	return hashes, nil
}

// TreeHash returns the tree hash of the root.
func (t *Tree) TreeHash(h Hasher) ([]byte, error) {
	hashes, err := t.TreeHashes(h)
	if err != nil {
		return nil, err
	}
	return hashes[treemath.Root(t.leaves)], nil
}

// treeHashExcluding is the tree hash of x in the tree where the leaves in
// exclude are blank and removed from every unmerged_leaves list. Subtrees
// holding none of them reuse the precomputed hashes.
func (t *Tree) treeHashExcluding(h Hasher, hashes [][]byte, x treemath.NodeIndex, exclude []uint32) []byte {
	touched := false
	for _, l := range exclude {
		if treemath.InSubtree(treemath.LeafIndex(l).NodeIndex(), x) {
			touched = true
			break
		}
	}
	if !touched {
		return hashes[x]
	}
	var w codec.Writer
	if x.IsLeaf() {
		t.leafHashInput(&w, x, true) // x is one of the excluded leaves
		return h.Hash(w.Bytes())
	}
	l, _ := treemath.Left(x)
	r, _ := treemath.Right(x)
	lh := t.treeHashExcluding(h, hashes, l, exclude)
	rh := t.treeHashExcluding(h, hashes, r, exclude)
	t.parentHashInput(&w, x, lh, rh, exclude)
	return h.Hash(w.Bytes())
}

// parentHash computes the parent hash of P with copath child s (RFC 9420
// section 7.9): Hash(ParentHashInput).
func (t *Tree) parentHash(h Hasher, hashes [][]byte, p treemath.NodeIndex, s treemath.NodeIndex) []byte {
	pn := t.Parent(p)
	var w codec.Writer
	w.Opaque(pn.EncryptionKey)
	w.Opaque(pn.ParentHash)
	w.Opaque(t.treeHashExcluding(h, hashes, s, pn.UnmergedLeaves))
	return h.Hash(w.Bytes())
}

// nodeParentHash is the parent_hash field of node d (nil for leaves not
// created by a commit).
func (t *Tree) nodeParentHash(d treemath.NodeIndex) []byte {
	n := t.Node(d)
	switch {
	case n == nil:
		return nil
	case n.Parent != nil:
		return n.Parent.ParentHash
	case n.Leaf.Source == LeafNodeSourceCommit:
		return n.Leaf.ParentHash
	}
	return nil
}

// VerifyParentHashes checks that every non-blank parent node is
// parent-hash valid, top-down: exactly one descendant D has a parent hash
// valid with respect to it (RFC 9420 section 7.9.2).
func (t *Tree) VerifyParentHashes(h Hasher) error {
	hashes, err := t.TreeHashes(h)
	if err != nil {
		return err
	}
	var res []treemath.NodeIndex
	var unmerged []treemath.NodeIndex
	for x := 1; x < len(t.nodes); x += 2 {
		p := treemath.NodeIndex(x)
		pn := t.Parent(p)
		if pn == nil {
			continue
		}
		l, _ := treemath.Left(p)
		r, _ := treemath.Right(p)
		valid := 0
		for _, side := range [2][2]treemath.NodeIndex{{l, r}, {r, l}} {
			c, s := side[0], side[1]
			ph := t.parentHash(h, hashes, p, s)
			res = t.AppendResolution(res[:0], c)
			// P's unmerged leaves under C, as node indices.
			unmerged = unmerged[:0]
			for _, u := range pn.UnmergedLeaves {
				if n := treemath.LeafIndex(u).NodeIndex(); treemath.InSubtree(n, c) {
					unmerged = append(unmerged, n)
				}
			}
			slices.Sort(unmerged)
			for i, d := range res {
				// Cheap tests first: the set comparison below allocates.
				if len(res)-1 != len(unmerged) || !bytes.Equal(t.nodeParentHash(d), ph) {
					continue
				}
				rest := make([]treemath.NodeIndex, 0, len(res)-1)
				rest = append(rest, res[:i]...)
				rest = append(rest, res[i+1:]...)
				slices.Sort(rest)
				if slices.Equal(rest, unmerged) {
					valid++
				}
			}
		}
		if valid != 1 {
			return fmt.Errorf("%w: node %d has %d valid descendants, want 1", ErrParentHash, p, valid)
		}
	}
	return nil
}

// VerifyUnmergedLeaves checks every non-blank parent's unmerged_leaves
// (RFC 9420 sections 7.1 and 12.4.3.1): sorted increasing, each a
// non-blank leaf below the parent, and listed by every non-blank node
// between that leaf and the parent.
func (t *Tree) VerifyUnmergedLeaves() error {
	for x := 1; x < len(t.nodes); x += 2 {
		p := treemath.NodeIndex(x)
		pn := t.Parent(p)
		if pn == nil {
			continue
		}
		for i, u := range pn.UnmergedLeaves {
			if i > 0 && u <= pn.UnmergedLeaves[i-1] {
				return fmt.Errorf("%w: node %d: list not strictly increasing", ErrUnmergedLeaves, p)
			}
			leaf := treemath.LeafIndex(u)
			if uint64(u) >= uint64(t.leaves) || !treemath.InSubtree(leaf.NodeIndex(), p) {
				return fmt.Errorf("%w: node %d lists leaf %d outside its subtree", ErrUnmergedLeaves, p, u)
			}
			if t.Leaf(leaf) == nil {
				return fmt.Errorf("%w: node %d lists blank leaf %d", ErrUnmergedLeaves, p, u)
			}
			for y, ok := treemath.Parent(leaf.NodeIndex(), t.leaves); ok && y != p; y, ok = treemath.Parent(y, t.leaves) {
				if yn := t.Parent(y); yn != nil && !slices.Contains(yn.UnmergedLeaves, u) {
					return fmt.Errorf("%w: node %d lists leaf %d but node %d below it does not", ErrUnmergedLeaves, p, u, y)
				}
			}
		}
	}
	return nil
}

// setParent replaces parent node x, never mutating the old node (which may
// be shared with a decoded RatchetTree).
func (t *Tree) setParent(x treemath.NodeIndex, p *ParentNode) {
	if p == nil {
		t.setNode(x, nil)
		return
	}
	t.setNode(x, &Node{Type: NodeTypeParent, Parent: p})
}

// blankDirectPath blanks every parent node above leaf l.
func (t *Tree) blankDirectPath(l treemath.LeafIndex) {
	for y, ok := treemath.Parent(l.NodeIndex(), t.leaves); ok; y, ok = treemath.Parent(y, t.leaves) {
		t.setNode(y, nil)
	}
}

// extend doubles the number of leaf slots, adding a blank root and a blank
// right subtree (RFC 9420 section 7.7).
func (t *Tree) extend() {
	t.leaves *= 2
	nodes := make([]*Node, treemath.NodeWidth(t.leaves))
	copy(nodes, t.nodes)
	t.nodes = nodes
	if t.hashes != nil {
		hashes := make([][]byte, len(nodes))
		copy(hashes, t.hashes)
		t.hashes = hashes
	}
}

// AddLeaf puts ln in the leftmost blank leaf, extending the tree when
// there is none, and adds the new leaf to the unmerged_leaves of every
// non-blank parent above it (RFC 9420 section 12.1.1).
func (t *Tree) AddLeaf(ln *LeafNode) treemath.LeafIndex {
	l := treemath.LeafIndex(0)
	for ; uint32(l) < t.leaves && t.Leaf(l) != nil; l++ {
	}
	if uint32(l) == t.leaves {
		t.extend()
	}
	t.setNode(l.NodeIndex(), &Node{Type: NodeTypeLeaf, Leaf: ln})
	for y, ok := treemath.Parent(l.NodeIndex(), t.leaves); ok; y, ok = treemath.Parent(y, t.leaves) {
		p := t.Parent(y)
		if p == nil {
			continue
		}
		np := *p
		i, found := slices.BinarySearch(p.UnmergedLeaves, uint32(l))
		if !found {
			np.UnmergedLeaves = slices.Insert(slices.Clone(p.UnmergedLeaves), i, uint32(l))
		}
		t.setParent(y, &np)
	}
	return l
}

// UpdateLeaf replaces leaf l with ln and blanks the parents above it (RFC
// 9420 section 12.1.2).
func (t *Tree) UpdateLeaf(l treemath.LeafIndex, ln *LeafNode) error {
	if uint32(l) >= t.leaves || t.Leaf(l) == nil {
		return fmt.Errorf("%w: leaf %d is blank or outside the tree", ErrInvalidTree, l)
	}
	t.setNode(l.NodeIndex(), &Node{Type: NodeTypeLeaf, Leaf: ln})
	t.blankDirectPath(l)
	return nil
}

// RemoveLeaf blanks leaf l and the parents above it, then truncates the
// tree while its right half holds no member (RFC 9420 section 12.1.3).
func (t *Tree) RemoveLeaf(l treemath.LeafIndex) error {
	if uint32(l) >= t.leaves || t.Leaf(l) == nil {
		return fmt.Errorf("%w: leaf %d is blank or outside the tree", ErrInvalidTree, l)
	}
	t.setNode(l.NodeIndex(), nil)
	t.blankDirectPath(l)
	t.truncate()
	return nil
}

// truncate halves the tree while the right half of its leaves is blank.
func (t *Tree) truncate() {
	for t.leaves > 1 {
		half := t.leaves / 2
		for l := half; l < t.leaves; l++ {
			if t.nodes[2*l] != nil {
				return
			}
		}
		t.leaves = half
		t.nodes = t.nodes[:treemath.NodeWidth(half)]
		if t.hashes != nil {
			t.hashes = t.hashes[:len(t.nodes)]
		}
	}
}
