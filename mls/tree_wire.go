package mls

import (
	"github.com/burrow-relay/burrow/mls/codec"
)

// ParentNode is an interior node of the ratchet tree (RFC 9420 section 7.1).
type ParentNode struct {
	EncryptionKey  []byte // HPKEPublicKey
	ParentHash     []byte
	UnmergedLeaves []uint32
}

// EncodeTo implements Encoder.
func (p *ParentNode) EncodeTo(w *codec.Writer) {
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	w.U32Vector(p.UnmergedLeaves)
}

// DecodeFrom implements Decoder.
func (p *ParentNode) DecodeFrom(r *codec.Reader) {
	*p = ParentNode{}
	p.EncryptionKey = r.Opaque()
	p.ParentHash = r.Opaque()
	p.UnmergedLeaves = r.U32Vector()
}

// Node is a non-blank ratchet tree node: exactly one of Leaf and Parent is
// used, as Type says.
type Node struct {
	Type   NodeType
	Leaf   *LeafNode
	Parent *ParentNode
}

// EncodeTo implements Encoder.
func (n *Node) EncodeTo(w *codec.Writer) {
	w.U8(uint8(n.Type))
	switch n.Type {
	case NodeTypeLeaf:
		if n.Leaf == nil {
			missing(w, "leaf node")
			return
		}
		n.Leaf.EncodeTo(w)
	case NodeTypeParent:
		if n.Parent == nil {
			missing(w, "parent node")
			return
		}
		n.Parent.EncodeTo(w)
	default:
		w.Fail(ErrInvalidEnum)
	}
}

// DecodeFrom implements Decoder.
func (n *Node) DecodeFrom(r *codec.Reader) {
	*n = Node{}
	n.Type = NodeType(r.U8())
	switch n.Type {
	case NodeTypeLeaf:
		n.Leaf = new(LeafNode)
		n.Leaf.DecodeFrom(r)
	case NodeTypeParent:
		n.Parent = new(ParentNode)
		n.Parent.DecodeFrom(r)
	default:
		badEnum(r, "node_type", uint64(n.Type))
	}
}

// RatchetTree is the array form of a ratchet tree, optional<Node>
// ratchet_tree<V>: a nil entry is a blank node. Decoding keeps the list as
// sent; checks such as "the last node is not blank" belong to tree
// validation, not to syntax.
type RatchetTree []*Node

// EncodeTo implements Encoder.
func (t RatchetTree) EncodeTo(w *codec.Writer) {
	m := w.OpenVector()
	for _, n := range t {
		w.Present(n != nil)
		if n != nil {
			n.EncodeTo(w)
		}
	}
	w.CloseVector(m)
}

// DecodeFrom implements Decoder.
func (t *RatchetTree) DecodeFrom(r *codec.Reader) {
	s := r.OpenVector()
	var out RatchetTree
	for r.More() {
		if !r.Present() {
			out = append(out, nil)
			continue
		}
		n := new(Node)
		n.DecodeFrom(r)
		out = append(out, n)
	}
	r.CloseVector(s)
	*t = out
}

// DecodeRatchetTree decodes a serialized ratchet tree (the ratchet_tree
// extension's data).
func DecodeRatchetTree(b []byte) (RatchetTree, error) {
	var t RatchetTree
	if err := Unmarshal(b, &t); err != nil {
		return nil, err
	}
	return t, nil
}

// HPKECiphertext is an HPKE-sealed value (RFC 9420 section 7.6).
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

// EncodeTo implements Encoder.
func (c *HPKECiphertext) EncodeTo(w *codec.Writer) {
	w.Opaque(c.KEMOutput)
	w.Opaque(c.Ciphertext)
}

// DecodeFrom implements Decoder.
func (c *HPKECiphertext) DecodeFrom(r *codec.Reader) {
	*c = HPKECiphertext{}
	c.KEMOutput = r.Opaque()
	c.Ciphertext = r.Opaque()
}

// UpdatePathNode is one node of an UpdatePath.
type UpdatePathNode struct {
	EncryptionKey       []byte // HPKEPublicKey
	EncryptedPathSecret []HPKECiphertext
}

// EncodeTo implements Encoder.
func (n *UpdatePathNode) EncodeTo(w *codec.Writer) {
	w.Opaque(n.EncryptionKey)
	m := w.OpenVector()
	for i := range n.EncryptedPathSecret {
		n.EncryptedPathSecret[i].EncodeTo(w)
	}
	w.CloseVector(m)
}

// DecodeFrom implements Decoder.
func (n *UpdatePathNode) DecodeFrom(r *codec.Reader) {
	*n = UpdatePathNode{}
	n.EncryptionKey = r.Opaque()
	s := r.OpenVector()
	n.EncryptedPathSecret = nil
	for r.More() {
		var c HPKECiphertext
		c.DecodeFrom(r)
		n.EncryptedPathSecret = append(n.EncryptedPathSecret, c)
	}
	r.CloseVector(s)
}

// UpdatePath is the new leaf and path keys a committer sends (RFC 9420
// section 7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

// EncodeTo implements Encoder.
func (p *UpdatePath) EncodeTo(w *codec.Writer) {
	p.LeafNode.EncodeTo(w)
	m := w.OpenVector()
	for i := range p.Nodes {
		p.Nodes[i].EncodeTo(w)
	}
	w.CloseVector(m)
}

// DecodeFrom implements Decoder.
func (p *UpdatePath) DecodeFrom(r *codec.Reader) {
	*p = UpdatePath{}
	p.LeafNode.DecodeFrom(r)
	s := r.OpenVector()
	p.Nodes = nil
	for r.More() {
		var n UpdatePathNode
		n.DecodeFrom(r)
		p.Nodes = append(p.Nodes, n)
	}
	r.CloseVector(s)
}
