// Package treemath owns the array-based binary tree arithmetic of RFC 9420
// section 4.2 and appendix C: leaves sit at even node indices, parents at odd
// ones, and a tree with n leaves (n a power of two in MLS, since the tree is
// always full) has 2n-1 nodes. All functions are allocation-free except the
// path helpers, which append to a caller's slice.
package treemath

import "math/bits"

// NodeIndex is a position in the array representation of the tree.
type NodeIndex uint32

// LeafIndex is the position of a leaf among leaves (node index / 2).
type LeafIndex uint32

// NodeIndex returns the node index of leaf l.
func (l LeafIndex) NodeIndex() NodeIndex { return NodeIndex(l) * 2 }

// IsLeaf reports whether x is a leaf node.
func (x NodeIndex) IsLeaf() bool { return x&1 == 0 }

// LeafIndex returns the leaf index of x; valid only when x.IsLeaf().
func (x NodeIndex) LeafIndex() LeafIndex { return LeafIndex(x / 2) }

// Level is the height of x above the leaves: 0 for leaves, and the number of
// trailing one bits in general.
func Level(x NodeIndex) uint {
	return uint(bits.TrailingZeros32(^uint32(x)))
}

// NodeWidth is the number of nodes in a tree with n leaves.
func NodeWidth(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// Root is the root node of a tree with n leaves (n >= 1).
func Root(n uint32) NodeIndex {
	w := NodeWidth(n)
	if w == 0 {
		return 0
	}
	return NodeIndex(uint32(1)<<(bits.Len32(w)-1) - 1)
}

// Left is the left child of x; ok is false for leaves.
func Left(x NodeIndex) (child NodeIndex, ok bool) {
	k := Level(x)
	if k == 0 {
		return 0, false
	}
	return x ^ (1 << (k - 1)), true
}

// Right is the right child of x; ok is false for leaves.
func Right(x NodeIndex) (child NodeIndex, ok bool) {
	k := Level(x)
	if k == 0 {
		return 0, false
	}
	return x ^ (3 << (k - 1)), true
}

// Parent is the parent of x in a tree with n leaves; ok is false for the
// root and for nodes outside the tree.
func Parent(x NodeIndex, n uint32) (parent NodeIndex, ok bool) {
	if uint32(x) >= NodeWidth(n) || x == Root(n) {
		return 0, false
	}
	k := Level(x)
	b := (x >> (k + 1)) & 1
	return (x | (1 << k)) ^ (b << (k + 1)), true
}

// Sibling is the other child of x's parent; ok is false for the root and for
// nodes outside the tree.
func Sibling(x NodeIndex, n uint32) (sibling NodeIndex, ok bool) {
	p, ok := Parent(x, n)
	if !ok {
		return 0, false
	}
	if x < p {
		return Right(p)
	}
	return Left(p)
}

// AppendDirectPath appends the direct path of x (its parent, grandparent, …,
// up to and including the root; empty for the root) to dst.
func AppendDirectPath(dst []NodeIndex, x NodeIndex, n uint32) []NodeIndex {
	for {
		p, ok := Parent(x, n)
		if !ok {
			return dst
		}
		dst = append(dst, p)
		x = p
	}
}

// DirectPath returns the direct path of x in a tree with n leaves.
func DirectPath(x NodeIndex, n uint32) []NodeIndex {
	return AppendDirectPath(make([]NodeIndex, 0, bits.Len32(n)), x, n)
}

// AppendCopath appends the copath of x (the sibling of x and of each node on
// its direct path below the root) to dst.
func AppendCopath(dst []NodeIndex, x NodeIndex, n uint32) []NodeIndex {
	for {
		s, ok := Sibling(x, n)
		if !ok {
			return dst
		}
		dst = append(dst, s)
		x, _ = Parent(x, n)
	}
}

// Copath returns the copath of x in a tree with n leaves.
func Copath(x NodeIndex, n uint32) []NodeIndex {
	return AppendCopath(make([]NodeIndex, 0, bits.Len32(n)), x, n)
}

// CommonAncestor is the lowest node whose subtree holds both x and y.
func CommonAncestor(x, y NodeIndex) NodeIndex {
	lx, ly := Level(x)+1, Level(y)+1
	if lx <= ly && x>>ly == y>>ly {
		return y
	}
	if ly <= lx && x>>lx == y>>lx {
		return x
	}
	k := uint(0)
	for x != y {
		x, y = x>>1, y>>1
		k++
	}
	return x<<k + 1<<(k-1) - 1
}

// InSubtree reports whether node x lies in the subtree rooted at a.
func InSubtree(x, a NodeIndex) bool {
	k := Level(a) + 1
	return x>>k == a>>k
}
