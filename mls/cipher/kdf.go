package cipher

import (
	"crypto/hkdf"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrLength is returned when a requested output length is out of range.
var ErrLength = errors.New("mls/cipher: invalid output length")

// Extract is KDF.Extract(salt, ikm). A nil or empty salt means Nh zero bytes
// (HKDF's own default), which is what RFC 9420 writes as "0".
func (s *Suite) Extract(salt, ikm []byte) (Secret, error) {
	prk, err := hkdf.Extract(s.newHash, ikm, salt)
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: extract: %w", err)
	}
	return prk, nil
}

// Expand is KDF.Expand(secret, info, length).
func (s *Suite) Expand(secret, info []byte, length int) (Secret, error) {
	if length <= 0 || length > 255*s.nh {
		return nil, fmt.Errorf("%w: %d", ErrLength, length)
	}
	out, err := hkdf.Expand(s.newHash, secret, string(info), length)
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: expand: %w", err)
	}
	return out, nil
}

// ExpandWithLabel is ExpandWithLabel(secret, label, context, length) of
// RFC 9420 section 8: KDF.Expand with the encoded KDFLabel
// {uint16 length; opaque label<V> = "MLS 1.0 "+label; opaque context<V>}.
func (s *Suite) ExpandWithLabel(secret []byte, label string, context []byte, length int) (Secret, error) {
	if length <= 0 || length > 0xffff {
		return nil, fmt.Errorf("%w: %d", ErrLength, length)
	}
	// Most labels and contexts are short; a stack buffer avoids a heap
	// allocation for building the info in the common case.
	var buf [128]byte
	info := buf[:0]
	if n := 2 + labelledSize(true, label, context); n > len(buf) {
		info = make([]byte, 0, n)
	}
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info, err := appendLabelled(info, true, label, context)
	if err != nil {
		return nil, err
	}
	return s.Expand(secret, info, length)
}

// DeriveSecret is ExpandWithLabel(secret, label, "", Nh).
func (s *Suite) DeriveSecret(secret []byte, label string) (Secret, error) {
	return s.ExpandWithLabel(secret, label, nil, s.nh)
}

// DeriveTreeSecret is ExpandWithLabel(secret, label, generation, length) with
// the generation encoded as a big-endian uint32 (RFC 9420 section 9.1).
func (s *Suite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) (Secret, error) {
	var ctx [4]byte
	binary.BigEndian.PutUint32(ctx[:], generation)
	return s.ExpandWithLabel(secret, label, ctx[:], length)
}

// RefHash is RefHash(label, value) of RFC 9420 section 5.2: the suite hash of
// the encoded RefHashInput {opaque label<V>; opaque value<V>}. The label is
// used as given (no "MLS 1.0 " prefix is added: the callers' labels already
// carry it).
func (s *Suite) RefHash(label string, value []byte) ([]byte, error) {
	if len(label) > maxVarint || len(value) > maxVarint {
		return nil, fmt.Errorf("%w: ref hash input", ErrTooLong)
	}
	// Hash the header pieces and the value separately so a large value
	// (a KeyPackage, a Commit) is not copied.
	var hdr [4]byte
	h := s.newHash()
	h.Write(appendVarint(hdr[:0], len(label)))
	h.Write([]byte(label))
	h.Write(appendVarint(hdr[:0], len(value)))
	h.Write(value)
	return h.Sum(make([]byte, 0, s.nh)), nil
}

// Labels of the hash-based identifiers (RFC 9420 section 5.2).
const (
	KeyPackageRefLabel = "MLS 1.0 KeyPackage Reference"
	ProposalRefLabel   = "MLS 1.0 Proposal Reference"
)

// KeyPackageRef is MakeKeyPackageRef: RefHash over the encoded KeyPackage
// (the whole KeyPackage struct, as it appears in an MLSMessage).
func (s *Suite) KeyPackageRef(encodedKeyPackage []byte) ([]byte, error) {
	return s.RefHash(KeyPackageRefLabel, encodedKeyPackage)
}

// ProposalRef is MakeProposalRef: RefHash over the encoded
// AuthenticatedContent that carried the Proposal.
func (s *Suite) ProposalRef(encodedAuthenticatedContent []byte) ([]byte, error) {
	return s.RefHash(ProposalRefLabel, encodedAuthenticatedContent)
}

// MAC is the suite's MAC (HMAC with the suite hash) of data under key, used
// for membership tags and confirmation tags.
func (s *Suite) MAC(key, data []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(data)
	return m.Sum(make([]byte, 0, s.nh))
}

// VerifyMAC reports in constant time whether tag is the MAC of data.
func (s *Suite) VerifyMAC(key, data, tag []byte) bool {
	return hmac.Equal(s.MAC(key, data), tag)
}
