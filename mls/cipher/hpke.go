package cipher

import (
	"crypto/hpke"
	"errors"
	"fmt"
	"io"
)

// ErrDecrypt is returned when an HPKE or AEAD ciphertext does not open.
var ErrDecrypt = errors.New("mls/cipher: decryption failed")

// HPKEPrivateKey is an HPKE (KEM) private key of one suite. It prints
// redacted.
type HPKEPrivateKey struct {
	suite CipherSuite
	k     hpke.PrivateKey
	pub   []byte
}

// String implements fmt.Stringer with a redacted placeholder.
func (k HPKEPrivateKey) String() string { return "cipher.HPKEPrivateKey(redacted)" }

// GoString implements fmt.GoStringer with a redacted placeholder.
func (k HPKEPrivateKey) GoString() string { return k.String() }

// Format implements fmt.Formatter with a redacted placeholder for all verbs.
func (k HPKEPrivateKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// PublicKey returns the encoded HPKEPublicKey (SerializePublicKey).
func (k *HPKEPrivateKey) PublicKey() []byte { return k.pub }

// Bytes returns SerializePrivateKey of the key (RFC 9180 section 7.1.2).
func (k *HPKEPrivateKey) Bytes() (Secret, error) {
	b, err := k.k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: serialize HPKE key: %w", err)
	}
	return b, nil
}

func (s *Suite) wrapHPKEKey(k hpke.PrivateKey) *HPKEPrivateKey {
	return &HPKEPrivateKey{suite: s.id, k: k, pub: k.PublicKey().Bytes()}
}

// GenerateHPKEKey returns a fresh KEM key pair for the suite.
func (s *Suite) GenerateHPKEKey() (*HPKEPrivateKey, error) {
	k, err := s.kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: generate HPKE key: %w", err)
	}
	return s.wrapHPKEKey(k), nil
}

// ParseHPKEPrivateKey decodes a private key serialised with
// SerializePrivateKey.
func (s *Suite) ParseHPKEPrivateKey(priv []byte) (*HPKEPrivateKey, error) {
	k, err := s.kem.NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: HPKE private key: %w", ErrInvalidKey, err)
	}
	return s.wrapHPKEKey(k), nil
}

// ValidateHPKEPublicKey checks that pub is a valid encoded KEM public key.
func (s *Suite) ValidateHPKEPublicKey(pub []byte) error {
	if _, err := s.kem.NewPublicKey(pub); err != nil {
		return fmt.Errorf("%w: HPKE public key: %w", ErrInvalidKey, err)
	}
	return nil
}

// DeriveKeyPair is KEM.DeriveKeyPair(ikm) (RFC 9180 section 7.1.3), used for
// external_pub (RFC 9420 section 8) and for the node keys derived from path
// secrets (section 7.4).
func (s *Suite) DeriveKeyPair(ikm []byte) (*HPKEPrivateKey, error) {
	k, err := s.kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: derive key pair: %w", err)
	}
	return s.wrapHPKEKey(k), nil
}

// encryptContext encodes EncryptContext {opaque label<V> = "MLS 1.0 "+label;
// opaque context<V>}, the HPKE info of EncryptWithLabel.
func encryptContext(label string, context []byte) ([]byte, error) {
	return appendLabelled(make([]byte, 0, labelledSize(true, label, context)), true, label, context)
}

// EncryptWithLabel is SealBase(pub, EncryptContext(label, context), "",
// plaintext) of RFC 9420 section 5.1.3. It returns the KEM output and the
// ciphertext separately, as HPKECiphertext carries them.
func (s *Suite) EncryptWithLabel(pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	pk, err := s.kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: HPKE public key: %w", ErrInvalidKey, err)
	}
	info, err := encryptContext(label, context)
	if err != nil {
		return nil, nil, err
	}
	enc, sender, err := hpke.NewSender(pk, s.kdf, s.aead, info)
	if err != nil {
		return nil, nil, fmt.Errorf("mls/cipher: HPKE setup: %w", err)
	}
	ct, err := sender.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("mls/cipher: HPKE seal: %w", err)
	}
	return enc, ct, nil
}

// DecryptWithLabel is OpenBase(kemOutput, priv, EncryptContext(label,
// context), "", ciphertext). Failures wrap ErrDecrypt.
func (s *Suite) DecryptWithLabel(priv *HPKEPrivateKey, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	if priv == nil || priv.suite != s.id {
		return nil, fmt.Errorf("%w: HPKE key does not belong to %v", ErrInvalidKey, s.id)
	}
	info, err := encryptContext(label, context)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(kemOutput, priv.k, s.kdf, s.aead, info)
	if err != nil {
		return nil, fmt.Errorf("%w: HPKE setup: %w", ErrDecrypt, err)
	}
	pt, err := r.Open(nil, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDecrypt, label, err)
	}
	return pt, nil
}

// ExportSender runs SetupBaseS(pub, info) and exports length bytes under
// exporterContext. RFC 9420 section 8.3 uses it with info "" and the context
// "MLS 1.0 external init secret" for external joins. The context is set up
// with the suite's own AEAD, not as export-only: the AEAD id is part of the
// HPKE key schedule's suite_id (RFC 9180 section 5.1), so it changes every
// exported secret.
func (s *Suite) ExportSender(pub, info []byte, exporterContext string, length int) (kemOutput []byte, secret Secret, err error) {
	pk, err := s.kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: HPKE public key: %w", ErrInvalidKey, err)
	}
	enc, sender, err := hpke.NewSender(pk, s.kdf, s.aead, info)
	if err != nil {
		return nil, nil, fmt.Errorf("mls/cipher: HPKE setup: %w", err)
	}
	out, err := sender.Export(exporterContext, length)
	if err != nil {
		return nil, nil, fmt.Errorf("mls/cipher: HPKE export: %w", err)
	}
	return enc, out, nil
}

// ExportReceiver runs SetupBaseR(kemOutput, priv, info) with the suite's
// AEAD and exports length bytes under exporterContext; the receiving half
// of ExportSender.
func (s *Suite) ExportReceiver(priv *HPKEPrivateKey, kemOutput, info []byte, exporterContext string, length int) (Secret, error) {
	if priv == nil || priv.suite != s.id {
		return nil, fmt.Errorf("%w: HPKE key does not belong to %v", ErrInvalidKey, s.id)
	}
	r, err := hpke.NewRecipient(kemOutput, priv.k, s.kdf, s.aead, info)
	if err != nil {
		return nil, fmt.Errorf("%w: HPKE setup: %w", ErrDecrypt, err)
	}
	out, err := r.Export(exporterContext, length)
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: HPKE export: %w", err)
	}
	return out, nil
}
