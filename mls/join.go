package mls

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/keyschedule"
)

// LabelWelcome is the EncryptWithLabel label of a Welcome's GroupSecrets.
const LabelWelcome = "Welcome"

// ErrNotInWelcome means a Welcome has no secrets for the given KeyPackage.
var ErrNotInWelcome = errors.New("mls: Welcome holds no secrets for this KeyPackage")

// FindSecrets returns the entry of the Welcome addressed to the KeyPackage
// whose KeyPackageRef is ref.
func (wl *Welcome) FindSecrets(ref []byte) (*EncryptedGroupSecrets, error) {
	for i := range wl.Secrets {
		if bytes.Equal(wl.Secrets[i].NewMember, ref) {
			return &wl.Secrets[i], nil
		}
	}
	return nil, ErrNotInWelcome
}

// DecryptGroupSecrets opens a joiner's GroupSecrets with the private init
// key of its KeyPackage; the Welcome's encrypted_group_info is the
// encryption context (RFC 9420 section 12.4.3.1).
func DecryptGroupSecrets(suite *cipher.Suite, egs *EncryptedGroupSecrets, initKey *cipher.HPKEPrivateKey, encryptedGroupInfo []byte) (*GroupSecrets, error) {
	pt, err := suite.DecryptWithLabel(initKey, LabelWelcome, encryptedGroupInfo, egs.EncryptedGroupSecrets.KEMOutput, egs.EncryptedGroupSecrets.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("mls: group secrets: %w", err)
	}
	gs := new(GroupSecrets)
	if err := Unmarshal(pt, gs); err != nil {
		return nil, err
	}
	return gs, nil
}

// DecryptGroupInfo opens a Welcome's encrypted_group_info with the key and
// nonce derived from welcome_secret.
func DecryptGroupInfo(suite *cipher.Suite, welcomeSecret, encryptedGroupInfo []byte) (*GroupInfo, error) {
	key, nonce, err := keyschedule.WelcomeKeyNonce(suite, welcomeSecret)
	if err != nil {
		return nil, err
	}
	defer key.Zero()
	pt, err := suite.AEADOpen(nil, key, nonce, nil, encryptedGroupInfo)
	if err != nil {
		return nil, fmt.Errorf("mls: group info: %w", err)
	}
	return DecodeGroupInfo(pt)
}

// VerifyGroupInfoSignature checks gi's signature with the public signature
// key of its signer (the leaf at gi.Signer, looked up by the caller).
func VerifyGroupInfoSignature(suite *cipher.Suite, gi *GroupInfo, signerKey []byte) error {
	if err := suite.VerifyWithLabel(signerKey, LabelGroupInfoTBS, gi.TBS(), gi.Signature); err != nil {
		return fmt.Errorf("mls: GroupInfo signature: %w", err)
	}
	return nil
}
