// Package keyschedule owns the MLS key schedule of RFC 9420 section 8: the
// joiner, welcome and init secrets, the epoch secrets derived from
// epoch_secret, MLS-Exporter, the external key pair and external init
// secret, and the combination of pre-shared keys into psk_secret (section
// 8.4). It takes the GroupContext as encoded bytes, so it does not depend on
// the wire structures of package mls. Secrets print redacted and an epoch's
// secrets can be zeroed when the epoch ends (sections 9.2 and 14).
package keyschedule

import (
	"errors"
	"fmt"
	"io"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

// ErrDropped is returned when a secret is asked of an epoch whose secrets
// were consumed or dropped.
var ErrDropped = errors.New("mls/keyschedule: secret consumed or dropped")

// ErrSecretLength is returned when an input secret has the wrong length for
// the suite.
var ErrSecretLength = errors.New("mls/keyschedule: secret has the wrong length")

// externalInitLabel is the HPKE exporter context of RFC 9420 section 8.3.
const externalInitLabel = "MLS 1.0 external init secret"

// Epoch holds the secrets of one epoch. It is not safe for concurrent use.
// Accessors return the stored secret itself (not a copy) to keep the hot
// path allocation-free: callers must not modify it, and must Clone it if
// they keep it beyond the epoch.
type Epoch struct {
	suite *cipher.Suite

	joiner  cipher.Secret
	welcome cipher.Secret

	senderData    cipher.Secret
	encryption    cipher.Secret
	exporter      cipher.Secret
	external      cipher.Secret
	confirmation  cipher.Secret
	membership    cipher.Secret
	resumption    cipher.Secret
	authenticator cipher.Secret
	init          cipher.Secret
}

// String implements fmt.Stringer without revealing any secret.
func (e Epoch) String() string { return "keyschedule.Epoch(redacted)" }

// GoString implements fmt.GoStringer without revealing any secret.
func (e Epoch) GoString() string { return e.String() }

// Format implements fmt.Formatter so that no verb prints the secrets (the
// fields are unexported, so fmt would not call Secret's own methods).
func (e Epoch) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, e.String()) }

// zeros returns Nh zero bytes, the "0" of RFC 9420's key schedule diagrams.
func zeros(s *cipher.Suite) []byte { return make([]byte, s.Nh()) }

func checkLen(s *cipher.Suite, name string, b []byte) error {
	if len(b) != s.Nh() {
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrSecretLength, name, len(b), s.Nh())
	}
	return nil
}

// JoinerSecret computes joiner_secret = ExpandWithLabel(KDF.Extract(
// init_secret, commit_secret), "joiner", GroupContext, Nh). A nil
// commitSecret stands for the all-zero commit secret (a Commit without a
// path).
func JoinerSecret(s *cipher.Suite, initSecret, commitSecret, groupContext []byte) (cipher.Secret, error) {
	if err := checkLen(s, "init_secret", initSecret); err != nil {
		return nil, err
	}
	if commitSecret == nil {
		commitSecret = zeros(s)
	}
	prk, err := s.Extract(initSecret, commitSecret)
	if err != nil {
		return nil, err
	}
	defer prk.Zero()
	return s.ExpandWithLabel(prk, "joiner", groupContext, s.Nh())
}

// memberSecret is the KDF.Extract(joiner_secret, psk_secret) both the
// welcome_secret and the epoch_secret are derived from.
func memberSecret(s *cipher.Suite, joinerSecret, pskSecret []byte) (cipher.Secret, error) {
	if err := checkLen(s, "joiner_secret", joinerSecret); err != nil {
		return nil, err
	}
	if pskSecret == nil {
		pskSecret = zeros(s)
	}
	return s.Extract(joinerSecret, pskSecret)
}

// WelcomeSecret computes welcome_secret = DeriveSecret(KDF.Extract(
// joiner_secret, psk_secret), "welcome"). A nil pskSecret stands for the
// all-zero psk_secret (no PSKs).
func WelcomeSecret(s *cipher.Suite, joinerSecret, pskSecret []byte) (cipher.Secret, error) {
	m, err := memberSecret(s, joinerSecret, pskSecret)
	if err != nil {
		return nil, err
	}
	defer m.Zero()
	return s.DeriveSecret(m, "welcome")
}

// WelcomeKeyNonce derives the AEAD key and nonce that encrypt a Welcome's
// GroupInfo (RFC 9420 section 12.4.3.1).
func WelcomeKeyNonce(s *cipher.Suite, welcomeSecret []byte) (key, nonce cipher.Secret, err error) {
	key, err = s.ExpandWithLabel(welcomeSecret, "key", nil, s.Nk())
	if err != nil {
		return nil, nil, err
	}
	nonce, err = s.ExpandWithLabel(welcomeSecret, "nonce", nil, s.Nn())
	if err != nil {
		key.Zero()
		return nil, nil, err
	}
	return key, nonce, nil
}

// Derive runs the whole key schedule for a new epoch from the previous
// epoch's init_secret (or, for an external commit, the external init
// secret), the commit_secret, the psk_secret and the new epoch's encoded
// GroupContext. Nil commitSecret or pskSecret stand for all-zero values.
func Derive(s *cipher.Suite, initSecret, commitSecret, pskSecret, groupContext []byte) (*Epoch, error) {
	joiner, err := JoinerSecret(s, initSecret, commitSecret, groupContext)
	if err != nil {
		return nil, err
	}
	e, err := FromJoiner(s, joiner, pskSecret, groupContext)
	joiner.Zero()
	return e, err
}

// FromJoiner runs the key schedule from a joiner_secret, as a new member
// does with the one from its Welcome's GroupSecrets.
func FromJoiner(s *cipher.Suite, joinerSecret, pskSecret, groupContext []byte) (*Epoch, error) {
	m, err := memberSecret(s, joinerSecret, pskSecret)
	if err != nil {
		return nil, err
	}
	defer m.Zero()
	e := &Epoch{suite: s, joiner: cipher.Secret(joinerSecret).Clone()}
	if e.welcome, err = s.DeriveSecret(m, "welcome"); err != nil {
		return nil, err
	}
	epochSecret, err := s.ExpandWithLabel(m, "epoch", groupContext, s.Nh())
	if err != nil {
		return nil, err
	}
	defer epochSecret.Zero()
	for _, d := range []struct {
		label string
		dst   *cipher.Secret
	}{
		{"sender data", &e.senderData},
		{"encryption", &e.encryption},
		{"exporter", &e.exporter},
		{"external", &e.external},
		{"confirm", &e.confirmation},
		{"membership", &e.membership},
		{"resumption", &e.resumption},
		{"authentication", &e.authenticator},
		{"init", &e.init},
	} {
		if *d.dst, err = s.DeriveSecret(epochSecret, d.label); err != nil {
			e.Drop()
			return nil, err
		}
	}
	return e, nil
}

// Suite returns the epoch's ciphersuite.
func (e *Epoch) Suite() *cipher.Suite { return e.suite }

// JoinerSecret returns joiner_secret (needed to build a Welcome), or nil
// after DropWelcomeSecrets or Drop.
func (e *Epoch) JoinerSecret() cipher.Secret { return e.joiner }

// WelcomeSecret returns welcome_secret, or nil after DropWelcomeSecrets or
// Drop.
func (e *Epoch) WelcomeSecret() cipher.Secret { return e.welcome }

// SenderDataSecret returns sender_data_secret.
func (e *Epoch) SenderDataSecret() cipher.Secret { return e.senderData }

// EncryptionSecret returns encryption_secret, or nil once NewSecretTree has
// consumed it.
func (e *Epoch) EncryptionSecret() cipher.Secret { return e.encryption }

// ExporterSecret returns exporter_secret.
func (e *Epoch) ExporterSecret() cipher.Secret { return e.exporter }

// ExternalSecret returns external_secret.
func (e *Epoch) ExternalSecret() cipher.Secret { return e.external }

// ConfirmationKey returns confirmation_key.
func (e *Epoch) ConfirmationKey() cipher.Secret { return e.confirmation }

// MembershipKey returns membership_key.
func (e *Epoch) MembershipKey() cipher.Secret { return e.membership }

// ResumptionPSK returns resumption_psk.
func (e *Epoch) ResumptionPSK() cipher.Secret { return e.resumption }

// EpochAuthenticator returns epoch_authenticator.
func (e *Epoch) EpochAuthenticator() cipher.Secret { return e.authenticator }

// InitSecret returns init_secret, or nil once Next has consumed it.
func (e *Epoch) InitSecret() cipher.Secret { return e.init }

// Next derives the following epoch from this epoch's init_secret. It does
// not consume anything: a Commit is only adopted after its confirmation tag
// and the rest of RFC 9420 section 12.4.2 check out, and a rejected Commit
// must leave the current epoch intact. Once the new epoch is adopted, call
// Drop on this one (the init_secret is consumed by the epoch it starts,
// section 9.2).
func (e *Epoch) Next(commitSecret, pskSecret, groupContext []byte) (*Epoch, error) {
	if e.init == nil {
		return nil, fmt.Errorf("%w: init_secret", ErrDropped)
	}
	return Derive(e.suite, e.init, commitSecret, pskSecret, groupContext)
}

// NewSecretTree builds the epoch's secret tree and consumes
// encryption_secret, which is zeroed here.
func (e *Epoch) NewSecretTree(leafCount uint32, cfg secrettree.Config) (*secrettree.Tree, error) {
	if e.encryption == nil {
		return nil, fmt.Errorf("%w: encryption_secret", ErrDropped)
	}
	t, err := secrettree.New(e.suite, e.encryption, leafCount, cfg)
	if err != nil {
		return nil, err
	}
	e.encryption.Zero()
	e.encryption = nil
	return t, nil
}

// Exporter is MLS-Exporter(label, context, length) of RFC 9420 section 8.5:
// ExpandWithLabel(DeriveSecret(exporter_secret, label), "exported",
// Hash(context), length).
func (e *Epoch) Exporter(label string, context []byte, length int) (cipher.Secret, error) {
	if e.exporter == nil {
		return nil, fmt.Errorf("%w: exporter_secret", ErrDropped)
	}
	ds, err := e.suite.DeriveSecret(e.exporter, label)
	if err != nil {
		return nil, err
	}
	defer ds.Zero()
	return e.suite.ExpandWithLabel(ds, "exported", e.suite.Hash(context), length)
}

// ExternalKeyPair derives (external_priv, external_pub) =
// KEM.DeriveKeyPair(external_secret).
func (e *Epoch) ExternalKeyPair() (*cipher.HPKEPrivateKey, error) {
	if e.external == nil {
		return nil, fmt.Errorf("%w: external_secret", ErrDropped)
	}
	return e.suite.DeriveKeyPair(e.external)
}

// ExternalPub returns the encoded external_pub published in GroupInfo.
func (e *Epoch) ExternalPub() ([]byte, error) {
	k, err := e.ExternalKeyPair()
	if err != nil {
		return nil, err
	}
	return k.PublicKey(), nil
}

// ExternalInitSecret recovers the init_secret a joiner sent in an
// ExternalInit proposal's kem_output (RFC 9420 section 8.3, receiving side).
func (e *Epoch) ExternalInitSecret(kemOutput []byte) (cipher.Secret, error) {
	k, err := e.ExternalKeyPair()
	if err != nil {
		return nil, err
	}
	return e.suite.ExportReceiver(k, kemOutput, nil, externalInitLabel, e.suite.Nh())
}

// NewExternalInit is the joiner's side of RFC 9420 section 8.3: it returns
// the kem_output for the ExternalInit proposal and the init_secret to start
// the key schedule with. The HPKE ephemeral key comes from random (nil: the
// system's randomness).
func NewExternalInit(s *cipher.Suite, externalPub []byte, random io.Reader) (kemOutput []byte, initSecret cipher.Secret, err error) {
	return s.ExportSenderFrom(random, externalPub, nil, externalInitLabel, s.Nh())
}

// ConfirmationTag computes MAC(confirmation_key, confirmed_transcript_hash).
func (e *Epoch) ConfirmationTag(confirmedTranscriptHash []byte) ([]byte, error) {
	if e.confirmation == nil {
		return nil, fmt.Errorf("%w: confirmation_key", ErrDropped)
	}
	return e.suite.MAC(e.confirmation, confirmedTranscriptHash), nil
}

// VerifyConfirmationTag reports in constant time whether tag confirms
// confirmedTranscriptHash in this epoch.
func (e *Epoch) VerifyConfirmationTag(confirmedTranscriptHash, tag []byte) bool {
	return e.confirmation != nil && e.suite.VerifyMAC(e.confirmation, confirmedTranscriptHash, tag)
}

// DropWelcomeSecrets zeroes joiner_secret and welcome_secret once the
// Welcome for the epoch has been built (or was not needed).
func (e *Epoch) DropWelcomeSecrets() {
	dropSecret(&e.joiner)
	dropSecret(&e.welcome)
}

// Drop zeroes and forgets every secret of the epoch. Call it when the
// epoch is no longer needed; keep a Clone of ResumptionPSK first if the
// application retains resumption PSKs (RFC 9420 section 8.6).
func (e *Epoch) Drop() {
	for _, p := range e.secrets() {
		dropSecret(p)
	}
}

func dropSecret(p *cipher.Secret) {
	p.Zero()
	*p = nil
}

// ErrState means a serialized epoch is malformed.
var ErrState = errors.New("mls/keyschedule: invalid serialized state")

// secrets lists the epoch's secrets in their serialization order.
func (e *Epoch) secrets() []*cipher.Secret {
	return []*cipher.Secret{
		&e.joiner, &e.welcome, &e.senderData, &e.encryption, &e.exporter, &e.external,
		&e.confirmation, &e.membership, &e.resumption, &e.authenticator, &e.init,
	}
}

// EncodeState appends every secret the epoch still holds (an absent one as
// such) to w, for RestoreState. It is key material: the caller must
// protect the bytes as it would the epoch.
func (e *Epoch) EncodeState(w *codec.Writer) {
	for _, p := range e.secrets() {
		w.Present(*p != nil)
		if *p != nil {
			w.Opaque(*p)
		}
	}
}

// RestoreState reads an epoch written by EncodeState. The secrets are
// copied out of the input.
func RestoreState(s *cipher.Suite, r *codec.Reader) (*Epoch, error) {
	e := &Epoch{suite: s}
	for _, p := range e.secrets() {
		if !r.Present() {
			continue
		}
		b := r.Opaque()
		if r.Err() == nil && len(b) != s.Nh() {
			e.Drop()
			return nil, fmt.Errorf("%w: secret of %d bytes, want %d", ErrState, len(b), s.Nh())
		}
		*p = cipher.Secret(b).Clone()
	}
	if err := r.Err(); err != nil {
		e.Drop()
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	return e, nil
}
