package cipher

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
)

// CipherSuite is the uint16 ciphersuite identifier of RFC 9420 section 17.1.
type CipherSuite uint16

// The ciphersuites registered by RFC 9420. Only the first three are
// implemented.
const (
	MLS128DHKEMX25519AES128GCMSHA256Ed25519        CipherSuite = 0x0001
	MLS128DHKEMP256AES128GCMSHA256P256             CipherSuite = 0x0002
	MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519 CipherSuite = 0x0003
	MLS256DHKEMX448AES256GCMSHA512Ed448            CipherSuite = 0x0004
	MLS256DHKEMP521AES256GCMSHA512P521             CipherSuite = 0x0005
	MLS256DHKEMX448ChaCha20Poly1305SHA512Ed448     CipherSuite = 0x0006
	MLS256DHKEMP384AES256GCMSHA384P384             CipherSuite = 0x0007
)

// ErrUnsupportedCipherSuite is returned for any ciphersuite this engine does
// not implement: the registered suites 4 to 7, reserved values and unknown or
// GREASE values.
var ErrUnsupportedCipherSuite = errors.New("mls/cipher: unsupported ciphersuite")

// Registered reports whether id is one of the seven suites RFC 9420
// registers (supported or not).
func (id CipherSuite) Registered() bool { return id >= 0x0001 && id <= 0x0007 }

// Supported reports whether New accepts id.
func (id CipherSuite) Supported() bool { return id >= 0x0001 && id <= 0x0003 }

// String returns the RFC 9420 name of the suite, or its number.
func (id CipherSuite) String() string {
	switch id {
	case MLS128DHKEMX25519AES128GCMSHA256Ed25519:
		return "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
	case MLS128DHKEMP256AES128GCMSHA256P256:
		return "MLS_128_DHKEMP256_AES128GCM_SHA256_P256"
	case MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519:
		return "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519"
	case MLS256DHKEMX448AES256GCMSHA512Ed448:
		return "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448"
	case MLS256DHKEMP521AES256GCMSHA512P521:
		return "MLS_256_DHKEMP521_AES256GCM_SHA512_P521"
	case MLS256DHKEMX448ChaCha20Poly1305SHA512Ed448:
		return "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448"
	case MLS256DHKEMP384AES256GCMSHA384P384:
		return "MLS_256_DHKEMP384_AES256GCM_SHA384_P384"
	}
	return fmt.Sprintf("ciphersuite(0x%04x)", uint16(id))
}

type signatureScheme uint8

const (
	sigEd25519 signatureScheme = iota + 1
	sigECDSAP256SHA256
)

type aeadAlg uint8

const (
	aeadAES128GCM aeadAlg = iota + 1
	aeadChaCha20Poly1305
)

// Suite is one instantiated ciphersuite. It is immutable and safe for
// concurrent use; obtain it with New and share the pointer.
type Suite struct {
	id      CipherSuite
	newHash func() hash.Hash
	kem     hpke.KEM
	curve   ecdh.Curve // the KEM's curve, for the seeded HPKE sender
	kdf     hpke.KDF
	aead    hpke.AEAD
	msgAEAD aeadAlg
	sig     signatureScheme
	nh      int // KDF.Nh: output size of KDF.Extract
	nk      int // AEAD.Nk
	nn      int // AEAD.Nn
	nenc    int // KEM.Nenc: size of the KEM output
}

// New returns the suite for id, or an error wrapping
// ErrUnsupportedCipherSuite.
func New(id CipherSuite) (*Suite, error) {
	s := &Suite{id: id, newHash: sha256.New, kdf: hpke.HKDFSHA256(), nh: sha256.Size, nn: 12}
	switch id {
	case MLS128DHKEMX25519AES128GCMSHA256Ed25519:
		s.curve = ecdh.X25519()
		s.kem, s.aead, s.msgAEAD, s.sig, s.nk, s.nenc = hpke.DHKEM(s.curve), hpke.AES128GCM(), aeadAES128GCM, sigEd25519, 16, 32
	case MLS128DHKEMP256AES128GCMSHA256P256:
		s.curve = ecdh.P256()
		s.kem, s.aead, s.msgAEAD, s.sig, s.nk, s.nenc = hpke.DHKEM(s.curve), hpke.AES128GCM(), aeadAES128GCM, sigECDSAP256SHA256, 16, 65
	case MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519:
		s.curve = ecdh.X25519()
		s.kem, s.aead, s.msgAEAD, s.sig, s.nk, s.nenc = hpke.DHKEM(s.curve), hpke.ChaCha20Poly1305(), aeadChaCha20Poly1305, sigEd25519, 32, 32
	default:
		if id.Registered() {
			return nil, fmt.Errorf("%w: %v (registered, not implemented)", ErrUnsupportedCipherSuite, id)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedCipherSuite, id)
	}
	return s, nil
}

// ID returns the suite's identifier.
func (s *Suite) ID() CipherSuite { return s.id }

// Nh is the output size of the suite's KDF.Extract (and hash) in bytes.
func (s *Suite) Nh() int { return s.nh }

// Nk is the key size of the suite's AEAD in bytes.
func (s *Suite) Nk() int { return s.nk }

// Nn is the nonce size of the suite's AEAD in bytes.
func (s *Suite) Nn() int { return s.nn }

// Hash returns the suite hash of data.
func (s *Suite) Hash(data []byte) []byte {
	h := s.newHash()
	h.Write(data)
	return h.Sum(make([]byte, 0, s.nh))
}

// NewHash returns a fresh hash.Hash of the suite's hash function, for callers
// that hash data in pieces (transcript hashes, tree hashes).
func (s *Suite) NewHash() hash.Hash { return s.newHash() }
