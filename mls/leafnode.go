package mls

import (
	"github.com/burrow-relay/burrow/mls/codec"
)

// LeafNode is a member's leaf in the ratchet tree (RFC 9420 section 7.2).
type LeafNode struct {
	EncryptionKey []byte // HPKEPublicKey
	SignatureKey  []byte // SignaturePublicKey
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	Lifetime      Lifetime // Source == LeafNodeSourceKeyPackage
	ParentHash    []byte   // Source == LeafNodeSourceCommit
	Extensions    Extensions
	Signature     []byte

	// Raw holds the exact bytes this LeafNode was decoded from (nil for one
	// built locally). TBS uses them so a signature is checked over what was
	// received. Set Raw to nil after changing any field of a decoded value.
	Raw []byte
}

func (ln *LeafNode) encodeTBSFields(w *codec.Writer) {
	w.Opaque(ln.EncryptionKey)
	w.Opaque(ln.SignatureKey)
	ln.Credential.EncodeTo(w)
	ln.Capabilities.EncodeTo(w)
	w.U8(uint8(ln.Source))
	switch ln.Source {
	case LeafNodeSourceKeyPackage:
		ln.Lifetime.EncodeTo(w)
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		w.Opaque(ln.ParentHash)
	default:
		w.Fail(ErrInvalidEnum)
	}
	ln.Extensions.EncodeTo(w)
}

// EncodeTo implements Encoder.
func (ln *LeafNode) EncodeTo(w *codec.Writer) {
	ln.encodeTBSFields(w)
	w.Opaque(ln.Signature)
}

// DecodeFrom implements Decoder.
func (ln *LeafNode) DecodeFrom(r *codec.Reader) {
	*ln = LeafNode{}
	start := r.Offset()
	ln.EncryptionKey = r.Opaque()
	ln.SignatureKey = r.Opaque()
	ln.Credential.DecodeFrom(r)
	ln.Capabilities.DecodeFrom(r)
	ln.Source = LeafNodeSource(r.U8())
	switch ln.Source {
	case LeafNodeSourceKeyPackage:
		ln.Lifetime.DecodeFrom(r)
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		ln.ParentHash = r.Opaque()
	default:
		badEnum(r, "leaf_node_source", uint64(ln.Source))
	}
	ln.Extensions.DecodeFrom(r)
	ln.Signature = r.Opaque()
	ln.Raw = r.Since(start)
}

// TBS returns the LeafNodeTBS bytes that the leaf's signature covers
// (label "LeafNodeTBS"). groupID and leafIndex are used only for the update
// and commit sources. When Raw is set the received bytes are used.
func (ln *LeafNode) TBS(groupID []byte, leafIndex uint32) []byte {
	var w codec.Writer
	if ln.Raw != nil {
		w.Fixed(tbsWithoutSignature(ln.Raw, ln.Signature))
	} else {
		ln.encodeTBSFields(&w)
	}
	if ln.Source == LeafNodeSourceUpdate || ln.Source == LeafNodeSourceCommit {
		w.Opaque(groupID)
		w.U32(leafIndex)
	}
	return w.Bytes()
}

// KeyPackage advertises a client so it can be added to groups (RFC 9420
// section 10).
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     []byte // HPKEPublicKey
	LeafNode    LeafNode
	Extensions  Extensions
	Signature   []byte

	// Raw holds the exact bytes this KeyPackage was decoded from (nil for
	// one built locally); TBS and KeyPackageRef computation use them. Set Raw
	// to nil after changing any field of a decoded value.
	Raw []byte
}

func (kp *KeyPackage) encodeTBSFields(w *codec.Writer) {
	w.U16(uint16(kp.Version))
	w.U16(uint16(kp.CipherSuite))
	w.Opaque(kp.InitKey)
	kp.LeafNode.EncodeTo(w)
	kp.Extensions.EncodeTo(w)
}

// EncodeTo implements Encoder.
func (kp *KeyPackage) EncodeTo(w *codec.Writer) {
	kp.encodeTBSFields(w)
	w.Opaque(kp.Signature)
}

// DecodeFrom implements Decoder.
func (kp *KeyPackage) DecodeFrom(r *codec.Reader) {
	*kp = KeyPackage{}
	start := r.Offset()
	kp.Version = ProtocolVersion(r.U16())
	kp.CipherSuite = CipherSuite(r.U16())
	kp.InitKey = r.Opaque()
	kp.LeafNode.DecodeFrom(r)
	kp.Extensions.DecodeFrom(r)
	kp.Signature = r.Opaque()
	kp.Raw = r.Since(start)
}

// TBS returns the KeyPackageTBS bytes the signature covers (label
// "KeyPackageTBS"), from Raw when set.
func (kp *KeyPackage) TBS() []byte {
	if kp.Raw != nil {
		return tbsWithoutSignature(kp.Raw, kp.Signature)
	}
	var w codec.Writer
	kp.encodeTBSFields(&w)
	return w.Bytes()
}

// Bytes returns the KeyPackage's encoding: Raw when set, otherwise a fresh
// encoding. KeyPackageRef is RefHash("MLS 1.0 KeyPackage Reference", Bytes()).
func (kp *KeyPackage) Bytes() ([]byte, error) {
	if kp.Raw != nil {
		return kp.Raw, nil
	}
	return Marshal(kp)
}

// DecodeKeyPackage decodes a bare KeyPackage.
func DecodeKeyPackage(b []byte) (*KeyPackage, error) {
	kp := new(KeyPackage)
	if err := Unmarshal(b, kp); err != nil {
		return nil, err
	}
	return kp, nil
}
