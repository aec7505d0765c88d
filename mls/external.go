package mls

import (
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// externalInitLabel is the HPKE exporter context of RFC 9420 section 8.3.
const externalInitLabel = "MLS 1.0 external init secret"

// hpkeSuite returns the HPKE KEM, KDF and AEAD of an MLS cipher suite.
// The external init secret is exported from an HPKE context set up with
// the suite's own AEAD (RFC 9420 section 8.3): the AEAD id is part of the
// HPKE key schedule, so an export-only context gives a different secret.
func hpkeSuite(cs CipherSuite) (hpke.KEM, hpke.KDF, hpke.AEAD, error) {
	switch cs {
	case X25519AES128GCMSHA256Ed25519:
		return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.AES128GCM(), nil
	case P256AES128GCMSHA256P256:
		return hpke.DHKEM(ecdh.P256()), hpke.HKDFSHA256(), hpke.AES128GCM(), nil
	case X25519ChaCha20Poly1305SHA256Ed25519:
		return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), nil
	}
	return nil, nil, nil, fmt.Errorf("%w: 0x%04x", cipher.ErrUnsupportedCipherSuite, uint16(cs))
}

// newExternalInit is the joiner's half of the external init: the KEM
// output to send in the ExternalInit proposal and the init secret.
func newExternalInit(cs CipherSuite, suite *cipher.Suite, externalPub []byte) (kemOutput []byte, initSecret cipher.Secret, err error) {
	kem, kdf, aead, err := hpkeSuite(cs)
	if err != nil {
		return nil, nil, err
	}
	pk, err := kem.NewPublicKey(externalPub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: external_pub: %w", ErrInvalidGroupInfo, err)
	}
	enc, sender, err := hpke.NewSender(pk, kdf, aead, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init: %w", err)
	}
	secret, err := sender.Export(externalInitLabel, suite.Nh())
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init: %w", err)
	}
	return enc, secret, nil
}

// externalInitSecret is the members' half: the init secret from the
// ExternalInit's KEM output and the epoch's external key pair.
func externalInitSecret(cs CipherSuite, suite *cipher.Suite, priv *cipher.HPKEPrivateKey, kemOutput []byte) (cipher.Secret, error) {
	kem, kdf, aead, err := hpkeSuite(cs)
	if err != nil {
		return nil, err
	}
	raw, err := priv.Bytes()
	if err != nil {
		return nil, err
	}
	defer raw.Zero()
	sk, err := kem.NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("mls: external key: %w", err)
	}
	r, err := hpke.NewRecipient(kemOutput, sk, kdf, aead, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: ExternalInit kem_output: %w", ErrInvalidProposal, err)
	}
	secret, err := r.Export(externalInitLabel, suite.Nh())
	if err != nil {
		return nil, fmt.Errorf("mls: external init: %w", err)
	}
	return secret, nil
}
