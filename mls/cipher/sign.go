package cipher

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// ErrInvalidSignature is returned when a signature does not verify.
var ErrInvalidSignature = errors.New("mls/cipher: invalid signature")

// ErrInvalidKey is returned for malformed public or private key encodings.
var ErrInvalidKey = errors.New("mls/cipher: invalid key")

// SignatureKey is a signature private key of one suite. It prints redacted.
type SignatureKey struct {
	scheme signatureScheme
	ed     ed25519.PrivateKey
	ec     *ecdsa.PrivateKey
	pub    []byte
}

// String implements fmt.Stringer with a redacted placeholder.
func (k SignatureKey) String() string { return "cipher.SignatureKey(redacted)" }

// GoString implements fmt.GoStringer with a redacted placeholder.
func (k SignatureKey) GoString() string { return k.String() }

// Format implements fmt.Formatter with a redacted placeholder for all verbs.
func (k SignatureKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// PublicKey returns the encoded SignaturePublicKey: the 32-byte Ed25519 key,
// or the uncompressed P-256 point.
func (k *SignatureKey) PublicKey() []byte { return k.pub }

// Bytes returns the private key as the test vectors encode it: the 32-byte
// Ed25519 seed, or the big-endian ECDSA scalar.
func (k *SignatureKey) Bytes() (Secret, error) {
	switch k.scheme {
	case sigEd25519:
		return Secret(k.ed.Seed()), nil
	case sigECDSAP256SHA256:
		b, err := k.ec.Bytes()
		if err != nil {
			return nil, fmt.Errorf("mls/cipher: encode ECDSA key: %w", err)
		}
		return b, nil
	}
	return nil, ErrInvalidKey
}

// GenerateSignatureKey returns a fresh signature key for the suite.
func (s *Suite) GenerateSignatureKey() (*SignatureKey, error) {
	switch s.sig {
	case sigEd25519:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("mls/cipher: generate Ed25519 key: %w", err)
		}
		return &SignatureKey{scheme: sigEd25519, ed: priv, pub: pub}, nil
	case sigECDSAP256SHA256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("mls/cipher: generate ECDSA key: %w", err)
		}
		return ecdsaKey(priv)
	}
	return nil, ErrUnsupportedCipherSuite
}

func ecdsaKey(priv *ecdsa.PrivateKey) (*SignatureKey, error) {
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: ECDSA public key: %w", ErrInvalidKey, err)
	}
	return &SignatureKey{scheme: sigECDSAP256SHA256, ec: priv, pub: pub}, nil
}

// ParseSignatureKey decodes a private key in the vectors' encoding (Ed25519
// seed or big-endian ECDSA scalar).
func (s *Suite) ParseSignatureKey(priv []byte) (*SignatureKey, error) {
	switch s.sig {
	case sigEd25519:
		if len(priv) != ed25519.SeedSize {
			return nil, fmt.Errorf("%w: Ed25519 seed is %d bytes, want %d", ErrInvalidKey, len(priv), ed25519.SeedSize)
		}
		k := ed25519.NewKeyFromSeed(priv)
		return &SignatureKey{scheme: sigEd25519, ed: k, pub: k.Public().(ed25519.PublicKey)}, nil
	case sigECDSAP256SHA256:
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), priv)
		if err != nil {
			return nil, fmt.Errorf("%w: ECDSA P-256 scalar: %w", ErrInvalidKey, err)
		}
		return ecdsaKey(k)
	}
	return nil, ErrUnsupportedCipherSuite
}

// signContent encodes SignContent {opaque label<V> = "MLS 1.0 "+label;
// opaque content<V>}.
func signContent(label string, content []byte) ([]byte, error) {
	return appendLabelled(make([]byte, 0, labelledSize(true, label, content)), true, label, content)
}

// SignWithLabel signs SignContent(label, content) with k (RFC 9420 section
// 5.1.2). Both schemes sign deterministically: Ed25519 by design, ECDSA per
// RFC 6979. ECDSA signatures are DER encoded; Ed25519 signatures are R||S.
func (s *Suite) SignWithLabel(k *SignatureKey, label string, content []byte) ([]byte, error) {
	if k == nil || k.scheme != s.sig {
		return nil, fmt.Errorf("%w: signature key does not belong to %v", ErrInvalidKey, s.id)
	}
	msg, err := signContent(label, content)
	if err != nil {
		return nil, err
	}
	switch s.sig {
	case sigEd25519:
		return ed25519.Sign(k.ed, msg), nil
	case sigECDSAP256SHA256:
		digest := sha256.Sum256(msg)
		// A nil reader makes the signature deterministic (RFC 6979), so a
		// seeded run of a group reproduces its messages byte for byte.
		sig, err := k.ec.Sign(nil, digest[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("mls/cipher: ECDSA sign: %w", err)
		}
		return sig, nil
	}
	return nil, ErrUnsupportedCipherSuite
}

// VerifyWithLabel checks signature over SignContent(label, content) against
// the encoded public key pub. It returns nil or an error wrapping
// ErrInvalidSignature or ErrInvalidKey.
func (s *Suite) VerifyWithLabel(pub []byte, label string, content, signature []byte) error {
	msg, err := signContent(label, content)
	if err != nil {
		return err
	}
	switch s.sig {
	case sigEd25519:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 public key is %d bytes", ErrInvalidKey, len(pub))
		}
		if !ed25519.Verify(ed25519.PublicKey(pub), msg, signature) {
			return fmt.Errorf("%w: %s", ErrInvalidSignature, label)
		}
		return nil
	case sigECDSAP256SHA256:
		pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
		if err != nil {
			return fmt.Errorf("%w: P-256 public key: %w", ErrInvalidKey, err)
		}
		digest := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(pk, digest[:], signature) {
			return fmt.Errorf("%w: %s", ErrInvalidSignature, label)
		}
		return nil
	}
	return ErrUnsupportedCipherSuite
}

// ValidateSignaturePublicKey checks that pub is a well-formed signature
// public key for the suite (used when validating credentials and leaves).
func (s *Suite) ValidateSignaturePublicKey(pub []byte) error {
	switch s.sig {
	case sigEd25519:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 public key is %d bytes", ErrInvalidKey, len(pub))
		}
		return nil
	case sigECDSAP256SHA256:
		if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub); err != nil {
			return fmt.Errorf("%w: P-256 public key: %w", ErrInvalidKey, err)
		}
		return nil
	}
	return ErrUnsupportedCipherSuite
}
