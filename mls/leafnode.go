package mls

import (
	"fmt"

	"github.com/burrow-relay/burrow/mls/cipher"
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
}

// TBS returns the LeafNodeTBS bytes that the leaf's signature covers
// (label "LeafNodeTBS"). groupID and leafIndex are used only for the update
// and commit sources. Decoding is strict (one encoding per value), so for
// a received LeafNode these are exactly the bytes that were signed.
func (ln *LeafNode) TBS(groupID []byte, leafIndex uint32) []byte {
	var w codec.Writer
	ln.encodeTBSFields(&w)
	if ln.Source == LeafNodeSourceUpdate || ln.Source == LeafNodeSourceCommit {
		w.Opaque(groupID)
		w.U32(leafIndex)
	}
	return w.Bytes()
}

// Sign sets ln's signature: signer signs the LeafNodeTBS of ln's current
// fields (with groupID and leafIndex for the update and commit sources).
// Call it after building or changing a leaf; encoding never signs.
func (ln *LeafNode) Sign(suite *cipher.Suite, signer *cipher.SignatureKey, groupID []byte, leafIndex uint32) error {
	sig, err := suite.SignWithLabel(signer, LabelLeafNodeTBS, ln.TBS(groupID, leafIndex))
	if err != nil {
		return fmt.Errorf("mls: sign leaf: %w", err)
	}
	ln.Signature = sig
	return nil
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
	kp.Version = ProtocolVersion(r.U16())
	kp.CipherSuite = CipherSuite(r.U16())
	kp.InitKey = r.Opaque()
	kp.LeafNode.DecodeFrom(r)
	kp.Extensions.DecodeFrom(r)
	kp.Signature = r.Opaque()
}

// TBS returns the KeyPackageTBS bytes the signature covers (label
// "KeyPackageTBS").
func (kp *KeyPackage) TBS() []byte {
	var w codec.Writer
	kp.encodeTBSFields(&w)
	return w.Bytes()
}

// Bytes returns the KeyPackage's encoding, which for a decoded KeyPackage
// is the input it came from. KeyPackageRef is RefHash("MLS 1.0 KeyPackage
// Reference", Bytes()).
func (kp *KeyPackage) Bytes() ([]byte, error) {
	return Marshal(kp)
}

// Sign signs kp with signer: first its key_package leaf, then the
// KeyPackage itself. Call it after building or changing a KeyPackage.
func (kp *KeyPackage) Sign(suite *cipher.Suite, signer *cipher.SignatureKey) error {
	if err := kp.LeafNode.Sign(suite, signer, nil, 0); err != nil {
		return err
	}
	sig, err := suite.SignWithLabel(signer, LabelKeyPackageTBS, kp.TBS())
	if err != nil {
		return fmt.Errorf("mls: sign KeyPackage: %w", err)
	}
	kp.Signature = sig
	return nil
}

// DecodeKeyPackage decodes a bare KeyPackage.
func DecodeKeyPackage(b []byte) (*KeyPackage, error) {
	kp := new(KeyPackage)
	if err := Unmarshal(b, kp); err != nil {
		return nil, err
	}
	return kp, nil
}
