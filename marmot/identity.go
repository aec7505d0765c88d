package marmot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
)

// KindIdentityProof is the local signing template of the account identity
// proof v2. It is never published.
const KindIdentityProof = 450

// The fixed parts of the kind 450 template (app-components/
// account-identity-proof-v2.md).
const (
	proofDomain  = "marmot.account-identity-proof.v2"
	proofContent = "Authorize this MLS leaf key for my Marmot account"
)

// signatureScheme is the TLS SignatureScheme of a ciphersuite's signature
// algorithm (RFC 9420 section 17.1), which the proof template names.
func signatureScheme(cs mls.CipherSuite) (uint16, bool) {
	switch cs {
	case mls.X25519AES128GCMSHA256Ed25519, mls.X25519ChaCha20Poly1305SHA256Ed25519:
		return 0x0807, true // ed25519
	case mls.P256AES128GCMSHA256P256:
		return 0x0403, true // ecdsa_secp256r1_sha256
	}
	return 0, false
}

// proofTemplate is the kind 450 event whose id the proof signs.
func proofTemplate(signer Pubkey, createdAt uint64, cs mls.CipherSuite, signatureKey []byte) (nostr.Event, error) {
	scheme, ok := signatureScheme(cs)
	if !ok {
		return nostr.Event{}, fail(ErrIdentityProof, nil, "ciphersuite 0x%04x has no known signature scheme", uint16(cs))
	}
	return nostr.Event{
		PubKey:    signer.Hex(),
		CreatedAt: nostr.Timestamp(createdAt),
		Kind:      KindIdentityProof,
		Tags: nostr.Tags{
			{"d", proofDomain},
			{"component", "0x" + hex4(uint16(ComponentIdentityProof))},
			{"ciphersuite", "0x" + hex4(uint16(cs))},
			{"signature_scheme", "0x" + hex4(scheme)},
			{"mls_signature_key", hex.EncodeToString(signatureKey)},
		},
		Content: proofContent,
	}, nil
}

// NewIdentityProof has the account sign the binding of its identity to an
// MLS leaf signature key (for ciphersuite cs), at createdAt (Unix seconds;
// the producer's current time). The signer's answer is checked field by
// field before it is used, as the spec asks of external signers.
func NewIdentityProof(account Signer, cs mls.CipherSuite, signatureKey []byte, createdAt uint64) (IdentityProof, error) {
	if createdAt == 0 || createdAt > maxProofTime {
		return IdentityProof{}, fail(ErrIdentityProof, nil, "created_at %d outside 1..2^53-1", createdAt)
	}
	signer := account.PublicKey()
	ev, err := proofTemplate(signer, createdAt, cs, signatureKey)
	if err != nil {
		return IdentityProof{}, err
	}
	want, _ := proofTemplate(signer, createdAt, cs, signatureKey)
	if err := account.SignEvent(&ev); err != nil {
		return IdentityProof{}, fmt.Errorf("marmot: sign the identity proof: %w", err)
	}
	if ev.PubKey != want.PubKey || ev.CreatedAt != want.CreatedAt || ev.Kind != want.Kind ||
		ev.Content != want.Content || !tagsEqual(ev.Tags, want.Tags) || ev.ID != want.GetID() {
		return IdentityProof{}, fail(ErrIdentityProof, nil, "the signer changed the proof template")
	}
	p := IdentityProof{Signer: signer, CreatedAt: createdAt}
	sig, err := hex.DecodeString(ev.Sig)
	if err != nil || len(sig) != 64 {
		return IdentityProof{}, fail(ErrIdentityProof, err, "the signer returned a malformed signature")
	}
	copy(p.Signature[:], sig)
	if err := VerifyIdentityProof(p, cs, signatureKey); err != nil {
		return IdentityProof{}, err
	}
	return p, nil
}

func tagsEqual(a, b nostr.Tags) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// VerifyIdentityProof checks p's BIP-340 signature over the kind 450
// template that binds p.Signer to signatureKey under ciphersuite cs.
func VerifyIdentityProof(p IdentityProof, cs mls.CipherSuite, signatureKey []byte) error {
	if p.CreatedAt == 0 || p.CreatedAt > maxProofTime {
		return fail(ErrIdentityProof, nil, "created_at %d outside 1..2^53-1", p.CreatedAt)
	}
	pub, err := schnorr.ParsePubKey(p.Signer[:])
	if err != nil {
		return fail(ErrIdentityProof, err, "signer is not an x-only secp256k1 public key")
	}
	ev, err := proofTemplate(p.Signer, p.CreatedAt, cs, signatureKey)
	if err != nil {
		return err
	}
	id := sha256.Sum256(ev.Serialize())
	sig, err := schnorr.ParseSignature(p.Signature[:])
	if err != nil {
		return fail(ErrIdentityProof, err, "signature is malformed")
	}
	if !sig.Verify(id[:], pub) {
		return fail(ErrIdentityProof, nil, "signature does not verify")
	}
	return nil
}

// AccountOf returns the Marmot account of a leaf: its BasicCredential
// identity, which must be 32 raw bytes.
func AccountOf(leaf *mls.LeafNode) (Pubkey, error) {
	c := &leaf.Credential
	if c.Type != mls.CredentialBasic {
		return Pubkey{}, fail(ErrIdentityProof, nil, "credential type 0x%04x, want basic", uint16(c.Type))
	}
	if len(c.Identity) != 32 {
		return Pubkey{}, fail(ErrIdentityProof, nil, "credential identity is %d bytes, want a 32-byte account key", len(c.Identity))
	}
	return Pubkey(c.Identity), nil
}

// VerifyLeafIdentity checks that a leaf (a member's, or the one inside a
// KeyPackage) carries a valid account identity proof for its own signature
// key under ciphersuite cs: component 0x8009 advertised in its
// app_components list, exactly one 0x8009 entry in its app_data_dictionary,
// signed by the account its BasicCredential names. It returns that account.
func VerifyLeafIdentity(leaf *mls.LeafNode, cs mls.CipherSuite) (Pubkey, error) {
	account, err := AccountOf(leaf)
	if err != nil {
		return Pubkey{}, err
	}
	if _, err := schnorr.ParsePubKey(account[:]); err != nil {
		return Pubkey{}, fail(ErrIdentityProof, err, "credential identity is not an x-only secp256k1 public key")
	}
	dict, found, err := leaf.Extensions.AppDataDictionary()
	switch {
	case err != nil:
		return Pubkey{}, fail(ErrIdentityProof, err, "leaf app_data_dictionary: %v", err)
	case !found:
		return Pubkey{}, fail(ErrIdentityProof, nil, "leaf has no app_data_dictionary")
	}
	list, ok := dict.Find(ComponentAppComponents)
	if !ok {
		return Pubkey{}, fail(ErrIdentityProof, nil, "leaf advertises no app_components")
	}
	supported, err := ParseComponentsList(list)
	if err != nil {
		return Pubkey{}, fail(ErrIdentityProof, err, "leaf app_components: %v", err)
	}
	if !supported.Has(ComponentIdentityProof) {
		return Pubkey{}, fail(ErrIdentityProof, nil, "leaf does not advertise component 0x8009")
	}
	// The dictionary is sorted without repeats (AppDataDictionary checks
	// it), so Find sees the only entry.
	data, ok := dict.Find(ComponentIdentityProof)
	if !ok {
		return Pubkey{}, fail(ErrIdentityProof, nil, "leaf has no account identity proof")
	}
	p, err := ParseIdentityProof(data)
	if err != nil {
		return Pubkey{}, fail(ErrIdentityProof, err, "%v", err)
	}
	if p.Signer != account {
		return Pubkey{}, fail(ErrIdentityProof, nil, "proof signer %s is not the credential's account %s", p.Signer.Hex(), account.Hex())
	}
	if err := VerifyIdentityProof(p, cs, leaf.SignatureKey); err != nil {
		return Pubkey{}, err
	}
	return account, nil
}

// CredentialValidator is the engine hook Marmot groups install: every leaf
// that enters or changes must carry a valid identity proof for its own
// signature key, and a replacing leaf must keep the account (RFC 9420's
// successor rule, mls.DefaultCredentialValidator).
func CredentialValidator(cs mls.CipherSuite) mls.CredentialValidator {
	return func(c mls.CredentialCheck) error {
		if _, err := VerifyLeafIdentity(c.Leaf, cs); err != nil {
			return err
		}
		return mls.DefaultCredentialValidator(c)
	}
}
