package mls_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/keyschedule"
)

// TestWelcomeVectors opens each Welcome with the KeyPackage's init key,
// decrypts the GroupInfo, checks its signature and recomputes its
// confirmation tag from the joiner secret.
func TestWelcomeVectors(t *testing.T) {
	var cases []struct {
		CipherSuite vectortest.Uint `json:"cipher_suite"`
		InitPriv    vectortest.Hex  `json:"init_priv"`
		KeyPackage  vectortest.Hex  `json:"key_package"`
		SignerPub   vectortest.Hex  `json:"signer_pub"`
		Welcome     vectortest.Hex  `json:"welcome"`
	}
	vectortest.Load(t, "welcome.json", &cases)
	count := vectortest.NewCounter("welcome.json")
	for i, tc := range cases {
		cs := uint64(tc.CipherSuite)
		suite, ok := countedSuite(t, count, cs)
		if !ok {
			continue
		}
		kpMsg, err := mls.DecodeMLSMessage(tc.KeyPackage)
		if err != nil || kpMsg.KeyPackage == nil {
			t.Fatalf("case %d: key package: %v", i, err)
		}
		wMsg, err := mls.DecodeMLSMessage(tc.Welcome)
		if err != nil || wMsg.Welcome == nil {
			t.Fatalf("case %d: welcome: %v", i, err)
		}
		welcome := wMsg.Welcome
		if uint64(welcome.CipherSuite) != cs {
			t.Errorf("case %d: welcome suite %d", i, welcome.CipherSuite)
		}
		kpBytes, err := kpMsg.KeyPackage.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		ref, err := suite.KeyPackageRef(kpBytes)
		if err != nil {
			t.Fatal(err)
		}
		egs, err := welcome.FindSecrets(ref)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		initKey, err := suite.ParseHPKEPrivateKey(tc.InitPriv)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(initKey.PublicKey(), kpMsg.KeyPackage.InitKey) {
			t.Fatalf("case %d: init_priv does not match the KeyPackage", i)
		}
		gs, err := mls.DecryptGroupSecrets(suite, egs, initKey, welcome.EncryptedGroupInfo)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		pskSecret, err := keyschedule.PSKSecret(suite, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(gs.PSKs) != 0 {
			t.Fatalf("case %d: unexpected PSKs", i)
		}
		welcomeSecret, err := keyschedule.WelcomeSecret(suite, gs.JoinerSecret, pskSecret)
		if err != nil {
			t.Fatal(err)
		}
		gi, err := mls.DecryptGroupInfo(suite, welcomeSecret, welcome.EncryptedGroupInfo)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if err := mls.VerifyGroupInfoSignature(suite, gi, tc.SignerPub); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
		ctx, err := mls.Marshal(&gi.GroupContext)
		if err != nil {
			t.Fatal(err)
		}
		epoch, err := keyschedule.FromJoiner(suite, gs.JoinerSecret, pskSecret, ctx)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := epoch.ConfirmationTag(gi.GroupContext.ConfirmedTranscriptHash)
		if err != nil || !bytes.Equal(tag, gi.ConfirmationTag) {
			t.Errorf("case %d: confirmation tag differs (%v)", i, err)
		}
		epoch.Drop()

		// A tampered signature and a foreign KeyPackage must both fail.
		bad := *gi
		bad.Signature = append([]byte{}, gi.Signature...)
		bad.Signature[len(bad.Signature)-1] ^= 1
		if err := mls.VerifyGroupInfoSignature(suite, &bad, tc.SignerPub); !errors.Is(err, cipher.ErrInvalidSignature) {
			t.Errorf("case %d: tampered GroupInfo signature: %v", i, err)
		}
		if _, err := welcome.FindSecrets(append([]byte{1}, ref...)); !errors.Is(err, mls.ErrNotInWelcome) {
			t.Errorf("case %d: foreign ref: %v", i, err)
		}
	}
	count.Check(t, len(cases))
}
