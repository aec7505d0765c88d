package mls

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// Signature labels of RFC 9420 (SignWithLabel adds the "MLS 1.0 " prefix).
const (
	LabelLeafNodeTBS      = "LeafNodeTBS"
	LabelKeyPackageTBS    = "KeyPackageTBS"
	LabelGroupInfoTBS     = "GroupInfoTBS"
	LabelFramedContentTBS = "FramedContentTBS"
)

// Errors reported by KeyPackage and LeafNode checks; the specific cause is
// wrapped too (for example cipher.ErrInvalidSignature).
var (
	ErrInvalidKeyPackage = errors.New("mls: invalid KeyPackage")
	ErrInvalidLeafNode   = errors.New("mls: invalid LeafNode")
	// ErrLifetime means the current time is outside a LeafNode's lifetime,
	// or the lifetime is longer than allowed.
	ErrLifetime = errors.New("mls: lifetime not valid")
)

// isDefaultExtension reports whether t is one of the extension types RFC
// 9420 section 7.2 calls default: they are never listed in capabilities.
func isDefaultExtension(t ExtensionType) bool {
	return t >= ExtApplicationID && t <= ExtExternalSenders
}

// LeafNodeRules configures the group-independent LeafNode checks.
type LeafNodeRules struct {
	// Now is the time the lifetime is checked against (key_package
	// source only); the zero time skips that check.
	Now time.Time
	// MaxLifetime bounds not_after - not_before; zero means no bound.
	MaxLifetime time.Duration
}

// VerifyLeafNode runs the checks of RFC 9420 section 7.3 that need no group
// state: the expected source, the signature (over group_id and leaf index
// for the update and commit sources), valid keys, extensions and
// credential type listed in the capabilities, no repeated extension, and
// the lifetime. Checks against the group (required capabilities,
// credential support by members, key uniqueness) belong to the caller.
func VerifyLeafNode(suite *cipher.Suite, ln *LeafNode, source LeafNodeSource, groupID []byte, leafIndex uint32, rules LeafNodeRules) error {
	if ln.Source != source {
		return fmt.Errorf("%w: leaf_node_source %d, want %d", ErrInvalidLeafNode, ln.Source, source)
	}
	if err := suite.ValidateSignaturePublicKey(ln.SignatureKey); err != nil {
		return fmt.Errorf("%w: signature_key: %w", ErrInvalidLeafNode, err)
	}
	if err := suite.ValidateHPKEPublicKey(ln.EncryptionKey); err != nil {
		return fmt.Errorf("%w: encryption_key: %w", ErrInvalidLeafNode, err)
	}
	if err := suite.VerifyWithLabel(ln.SignatureKey, LabelLeafNodeTBS, ln.TBS(groupID, leafIndex), ln.Signature); err != nil {
		return fmt.Errorf("%w: signature: %w", ErrInvalidLeafNode, err)
	}
	if t, dup := ln.Extensions.Duplicate(); dup {
		return fmt.Errorf("%w: extension 0x%04x appears twice", ErrInvalidLeafNode, uint16(t))
	}
	if _, _, err := ln.Extensions.AppDataDictionary(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLeafNode, err)
	}
	for _, e := range ln.Extensions {
		if !isDefaultExtension(e.Type) && !contains(ln.Capabilities.Extensions, e.Type) {
			return fmt.Errorf("%w: extension 0x%04x not listed in capabilities", ErrInvalidLeafNode, uint16(e.Type))
		}
	}
	if !contains(ln.Capabilities.Credentials, ln.Credential.Type) {
		return fmt.Errorf("%w: credential type 0x%04x not listed in capabilities", ErrInvalidLeafNode, uint16(ln.Credential.Type))
	}
	if ln.Source == LeafNodeSourceKeyPackage {
		if err := checkLifetime(ln.Lifetime, rules); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidLeafNode, err)
		}
	}
	return nil
}

func checkLifetime(l Lifetime, rules LeafNodeRules) error {
	if l.NotBefore > l.NotAfter {
		return fmt.Errorf("%w: not_before %d is after not_after %d", ErrLifetime, l.NotBefore, l.NotAfter)
	}
	if rules.MaxLifetime > 0 && l.NotAfter-l.NotBefore > uint64(rules.MaxLifetime/time.Second) {
		return fmt.Errorf("%w: lasts %d s, more than %v", ErrLifetime, l.NotAfter-l.NotBefore, rules.MaxLifetime)
	}
	if !rules.Now.IsZero() {
		now := rules.Now.Unix()
		if now < 0 || uint64(now) < l.NotBefore || uint64(now) > l.NotAfter {
			return fmt.Errorf("%w: %d is outside [%d, %d]", ErrLifetime, now, l.NotBefore, l.NotAfter)
		}
	}
	return nil
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// VerifyKeyPackage runs the group-independent checks of RFC 9420 section
// 10.1 on kp: protocol version 1.0, the suite's cipher suite, a valid
// key_package LeafNode, a valid signature by the leaf's signature key, a
// valid init_key different from the leaf's encryption_key, and no repeated
// KeyPackage extension.
func VerifyKeyPackage(suite *cipher.Suite, kp *KeyPackage, rules LeafNodeRules) error {
	if kp.Version != MLS10 {
		return fmt.Errorf("%w: version %d", ErrInvalidKeyPackage, kp.Version)
	}
	if uint16(kp.CipherSuite) != uint16(suite.ID()) {
		return fmt.Errorf("%w: cipher suite 0x%04x, checking with 0x%04x", ErrInvalidKeyPackage, uint16(kp.CipherSuite), uint16(suite.ID()))
	}
	if err := VerifyLeafNode(suite, &kp.LeafNode, LeafNodeSourceKeyPackage, nil, 0, rules); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	if err := suite.VerifyWithLabel(kp.LeafNode.SignatureKey, LabelKeyPackageTBS, kp.TBS(), kp.Signature); err != nil {
		return fmt.Errorf("%w: signature: %w", ErrInvalidKeyPackage, err)
	}
	if err := suite.ValidateHPKEPublicKey(kp.InitKey); err != nil {
		return fmt.Errorf("%w: init_key: %w", ErrInvalidKeyPackage, err)
	}
	if string(kp.InitKey) == string(kp.LeafNode.EncryptionKey) {
		return fmt.Errorf("%w: init_key equals the leaf encryption_key", ErrInvalidKeyPackage)
	}
	if t, dup := kp.Extensions.Duplicate(); dup {
		return fmt.Errorf("%w: extension 0x%04x appears twice", ErrInvalidKeyPackage, uint16(t))
	}
	if _, _, err := kp.Extensions.AppDataDictionary(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	return nil
}

// KeyPackageParams are the caller's choices for a new KeyPackage.
type KeyPackageParams struct {
	Credential     Credential
	Capabilities   Capabilities
	Lifetime       Lifetime
	LeafExtensions Extensions
	Extensions     Extensions
	// Rand supplies the init and encryption keys; nil means the system's
	// randomness (a seeded reader makes the KeyPackage reproducible).
	Rand io.Reader
}

// KeyPackagePrivate holds the private keys behind a new KeyPackage.
type KeyPackagePrivate struct {
	InitKey       *cipher.HPKEPrivateKey
	EncryptionKey *cipher.HPKEPrivateKey
}

// NewKeyPackage creates and signs a KeyPackage for suite with signer's key,
// generating fresh init and leaf encryption keys. Empty capability lists and
// a zero lifetime get the same defaults as CreateGroup (this suite, MLS 1.0,
// the credential's type; always valid), so the result always passes
// VerifyKeyPackage; callers that publish KeyPackages should set a bounded
// lifetime.
func NewKeyPackage(suite *cipher.Suite, signer *cipher.SignatureKey, p KeyPackageParams) (*KeyPackage, *KeyPackagePrivate, error) {
	leaf := LeafParams{Credential: p.Credential, Capabilities: p.Capabilities, Lifetime: p.Lifetime}.withDefaults(suite.ID())
	p.Capabilities, p.Lifetime = leaf.Capabilities, leaf.Lifetime
	initKey, err := suite.GenerateHPKEKeyFrom(p.Rand)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: new KeyPackage: %w", err)
	}
	encKey, err := suite.GenerateHPKEKeyFrom(p.Rand)
	if err != nil {
		return nil, nil, fmt.Errorf("mls: new KeyPackage: %w", err)
	}
	kp := &KeyPackage{
		Version:     MLS10,
		CipherSuite: suite.ID(),
		InitKey:     initKey.PublicKey(),
		LeafNode: LeafNode{
			EncryptionKey: encKey.PublicKey(),
			SignatureKey:  signer.PublicKey(),
			Credential:    p.Credential,
			Capabilities:  p.Capabilities,
			Source:        LeafNodeSourceKeyPackage,
			Lifetime:      p.Lifetime,
			Extensions:    p.LeafExtensions,
		},
		Extensions: p.Extensions,
	}
	if err := kp.Sign(suite, signer); err != nil {
		return nil, nil, fmt.Errorf("mls: new KeyPackage: %w", err)
	}
	return kp, &KeyPackagePrivate{InitKey: initKey, EncryptionKey: encKey}, nil
}
