package cipher

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"encoding/binary"
	"fmt"
	"io"
)

// The functions in this file take their randomness from a caller's
// io.Reader instead of the system's, so that a seeded reader makes every
// key, path secret and HPKE ciphertext of a run reproducible (Go's crypto
// packages ignore a custom reader since Go 1.26). A nil reader means the
// system's: the plain variants without "From" are used then.

// readRandom fills n bytes from r.
func readRandom(r io.Reader, n int) (Secret, error) {
	b := make(Secret, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("mls/cipher: randomness: %w", err)
	}
	return b, nil
}

// GenerateHPKEKeyFrom returns a KEM key pair derived from 32 bytes of r
// (KEM.DeriveKeyPair), or a fresh one from the system when r is nil.
func (s *Suite) GenerateHPKEKeyFrom(r io.Reader) (*HPKEPrivateKey, error) {
	if r == nil {
		return s.GenerateHPKEKey()
	}
	ikm, err := readRandom(r, 32)
	if err != nil {
		return nil, err
	}
	defer ikm.Zero()
	return s.DeriveKeyPair(ikm)
}

// GenerateSignatureKeyFrom returns a signature key drawn from r, or from
// the system when r is nil.
func (s *Suite) GenerateSignatureKeyFrom(r io.Reader) (*SignatureKey, error) {
	if r == nil {
		return s.GenerateSignatureKey()
	}
	switch s.sig {
	case sigEd25519:
		seed, err := readRandom(r, ed25519.SeedSize)
		if err != nil {
			return nil, err
		}
		defer seed.Zero()
		return s.ParseSignatureKey(seed)
	case sigECDSAP256SHA256:
		for {
			scalar, err := readRandom(r, 32)
			if err != nil {
				return nil, err
			}
			// Rejection sampling: about one draw in 2^32 is out of range.
			k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
			scalar.Zero()
			if err == nil {
				return ecdsaKey(k)
			}
		}
	}
	return nil, ErrUnsupportedCipherSuite
}

// EncryptWithLabelFrom is EncryptWithLabel with the HPKE ephemeral key
// drawn from r (the system's when r is nil).
func (s *Suite) EncryptWithLabelFrom(r io.Reader, pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	if r == nil {
		return s.EncryptWithLabel(pub, label, context, plaintext)
	}
	info, err := encryptContext(label, context)
	if err != nil {
		return nil, nil, err
	}
	enc, hc, err := s.setupBaseS(r, pub, info)
	if err != nil {
		return nil, nil, err
	}
	defer hc.zero()
	a, err := s.newAEAD(hc.key)
	if err != nil {
		return nil, nil, err
	}
	// The first (and only) message of the context uses base_nonce itself.
	return enc, a.Seal(nil, hc.baseNonce, plaintext, nil), nil
}

// ExportSenderFrom is ExportSender with the HPKE ephemeral key drawn from r
// (the system's when r is nil).
func (s *Suite) ExportSenderFrom(r io.Reader, pub, info []byte, exporterContext string, length int) (kemOutput []byte, secret Secret, err error) {
	if r == nil {
		return s.ExportSender(pub, info, exporterContext, length)
	}
	enc, hc, err := s.setupBaseS(r, pub, info)
	if err != nil {
		return nil, nil, err
	}
	defer hc.zero()
	out, err := s.hpkeLabeledExpand(hc.suiteID, hc.exporter, "sec", []byte(exporterContext), length)
	if err != nil {
		return nil, nil, err
	}
	return enc, out, nil
}

// hpkeContext is the sender's context of RFC 9180 section 5.1 in base mode.
type hpkeContext struct {
	suiteID        []byte
	key, baseNonce Secret
	exporter       Secret
}

func (c *hpkeContext) zero() {
	c.key.Zero()
	c.baseNonce.Zero()
	c.exporter.Zero()
}

// setupBaseS is SetupBaseS(pkR, info) of RFC 9180 section 5.1.1 with the
// DHKEM ephemeral key derived from 32 bytes of r: Encap (section 4.1), then
// KeySchedule in mode_base. crypto/hpke draws its ephemeral key from the
// system alone, so the sender side is built here from the same facts; the
// receiving side stays crypto/hpke's, and the tests check the two agree.
func (s *Suite) setupBaseS(r io.Reader, pub, info []byte) ([]byte, *hpkeContext, error) {
	pkR, err := s.curve.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: HPKE public key: %w", ErrInvalidKey, err)
	}
	ikm, err := readRandom(r, 32)
	if err != nil {
		return nil, nil, err
	}
	defer ikm.Zero()
	ephHPKE, err := s.kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, fmt.Errorf("mls/cipher: HPKE ephemeral key: %w", err)
	}
	skE, err := ephHPKE.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("mls/cipher: HPKE ephemeral key: %w", err)
	}
	eph, err := s.curve.NewPrivateKey(skE)
	clear(skE)
	if err != nil {
		return nil, nil, fmt.Errorf("mls/cipher: HPKE ephemeral key: %w", err)
	}
	dh, err := eph.ECDH(pkR)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: HPKE DH: %w", ErrInvalidKey, err)
	}
	defer clear(dh)
	enc := eph.PublicKey().Bytes()

	// Encap: shared_secret = ExtractAndExpand(dh, enc || pkRm).
	kemID := binary.BigEndian.AppendUint16([]byte("KEM"), s.kem.ID())
	eaePRK, err := s.hpkeLabeledExtract(kemID, nil, "eae_prk", dh)
	if err != nil {
		return nil, nil, err
	}
	defer eaePRK.Zero()
	kemContext := append(append([]byte{}, enc...), pub...)
	shared, err := s.hpkeLabeledExpand(kemID, eaePRK, "shared_secret", kemContext, s.nh)
	if err != nil {
		return nil, nil, err
	}
	defer shared.Zero()

	// KeySchedule(mode_base, shared_secret, info, "", "").
	suiteID := binary.BigEndian.AppendUint16([]byte("HPKE"), s.kem.ID())
	suiteID = binary.BigEndian.AppendUint16(suiteID, s.kdf.ID())
	suiteID = binary.BigEndian.AppendUint16(suiteID, s.aead.ID())
	pskIDHash, err := s.hpkeLabeledExtract(suiteID, nil, "psk_id_hash", nil)
	if err != nil {
		return nil, nil, err
	}
	infoHash, err := s.hpkeLabeledExtract(suiteID, nil, "info_hash", info)
	if err != nil {
		return nil, nil, err
	}
	ksc := append(append([]byte{0x00}, pskIDHash...), infoHash...)
	secret, err := s.hpkeLabeledExtract(suiteID, shared, "secret", nil)
	if err != nil {
		return nil, nil, err
	}
	defer secret.Zero()
	c := &hpkeContext{suiteID: suiteID}
	if c.key, err = s.hpkeLabeledExpand(suiteID, secret, "key", ksc, s.nk); err == nil {
		if c.baseNonce, err = s.hpkeLabeledExpand(suiteID, secret, "base_nonce", ksc, s.nn); err == nil {
			c.exporter, err = s.hpkeLabeledExpand(suiteID, secret, "exp", ksc, s.nh)
		}
	}
	if err != nil {
		c.zero()
		return nil, nil, err
	}
	return enc, c, nil
}

// hpkeLabeledExtract is LabeledExtract of RFC 9180 section 4.
func (s *Suite) hpkeLabeledExtract(suiteID, salt []byte, label string, ikm []byte) (Secret, error) {
	labeled := make([]byte, 0, 7+len(suiteID)+len(label)+len(ikm))
	labeled = append(append(append(append(labeled, "HPKE-v1"...), suiteID...), label...), ikm...)
	defer clear(labeled)
	prk, err := hkdf.Extract(s.newHash, labeled, salt)
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: HPKE extract: %w", err)
	}
	return prk, nil
}

// hpkeLabeledExpand is LabeledExpand of RFC 9180 section 4.
func (s *Suite) hpkeLabeledExpand(suiteID, prk []byte, label string, info []byte, length int) (Secret, error) {
	if length <= 0 || length > 0xffff {
		return nil, fmt.Errorf("%w: %d", ErrLength, length)
	}
	labeled := binary.BigEndian.AppendUint16(make([]byte, 0, 9+len(suiteID)+len(label)+len(info)), uint16(length))
	labeled = append(append(append(append(labeled, "HPKE-v1"...), suiteID...), label...), info...)
	out, err := hkdf.Expand(s.newHash, prk, string(labeled), length)
	if err != nil {
		return nil, fmt.Errorf("mls/cipher: HPKE expand: %w", err)
	}
	return out, nil
}
