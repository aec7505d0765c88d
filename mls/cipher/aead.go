package cipher

import (
	"crypto/aes"
	gocipher "crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// newAEAD returns the suite's message AEAD keyed with key.
func (s *Suite) newAEAD(key []byte) (gocipher.AEAD, error) {
	if len(key) != s.nk {
		return nil, fmt.Errorf("%w: AEAD key is %d bytes, want %d", ErrInvalidKey, len(key), s.nk)
	}
	switch s.msgAEAD {
	case aeadAES128GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("mls/cipher: AES: %w", err)
		}
		a, err := gocipher.NewGCM(b)
		if err != nil {
			return nil, fmt.Errorf("mls/cipher: GCM: %w", err)
		}
		return a, nil
	case aeadChaCha20Poly1305:
		a, err := chacha20poly1305.New(key)
		if err != nil {
			return nil, fmt.Errorf("mls/cipher: ChaCha20-Poly1305: %w", err)
		}
		return a, nil
	}
	return nil, ErrUnsupportedCipherSuite
}

// AEADSeal encrypts plaintext with the suite's AEAD (RFC 9420 sections 6.3.1
// and 6.3.2, and the Welcome's GroupInfo). The output is appended to dst,
// which may be nil.
func (s *Suite) AEADSeal(dst, key, nonce, aad, plaintext []byte) ([]byte, error) {
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, fmt.Errorf("%w: nonce is %d bytes, want %d", ErrInvalidKey, len(nonce), a.NonceSize())
	}
	return a.Seal(dst, nonce, plaintext, aad), nil
}

// AEADOpen decrypts ciphertext with the suite's AEAD, appending the plaintext
// to dst. Authentication failures wrap ErrDecrypt.
func (s *Suite) AEADOpen(dst, key, nonce, aad, ciphertext []byte) ([]byte, error) {
	a, err := s.newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, fmt.Errorf("%w: nonce is %d bytes, want %d", ErrInvalidKey, len(nonce), a.NonceSize())
	}
	pt, err := a.Open(dst, nonce, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return pt, nil
}
