package mls_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

type passiveCase struct {
	CipherSuite  vectortest.Uint `json:"cipher_suite"`
	ExternalPSKs []struct {
		PSKID vectortest.Hex `json:"psk_id"`
		PSK   vectortest.Hex `json:"psk"`
	} `json:"external_psks"`
	KeyPackage                vectortest.Hex `json:"key_package"`
	SignaturePriv             vectortest.Hex `json:"signature_priv"`
	EncryptionPriv            vectortest.Hex `json:"encryption_priv"`
	InitPriv                  vectortest.Hex `json:"init_priv"`
	Welcome                   vectortest.Hex `json:"welcome"`
	RatchetTree               vectortest.Hex `json:"ratchet_tree"`
	InitialEpochAuthenticator vectortest.Hex `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []vectortest.Hex `json:"proposals"`
		Commit             vectortest.Hex   `json:"commit"`
		EpochAuthenticator vectortest.Hex   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// runPassive joins from the case's Welcome and follows every epoch,
// comparing epoch authenticators.
func runPassive(suite *cipher.Suite, tc *passiveCase) error {
	kpMsg, err := mls.DecodeMLSMessage(tc.KeyPackage)
	if err != nil || kpMsg.KeyPackage == nil {
		return fmt.Errorf("key package: %v", err)
	}
	initKey, err := suite.ParseHPKEPrivateKey(tc.InitPriv)
	if err != nil {
		return fmt.Errorf("init_priv: %w", err)
	}
	encKey, err := suite.ParseHPKEPrivateKey(tc.EncryptionPriv)
	if err != nil {
		return fmt.Errorf("encryption_priv: %w", err)
	}
	sigKey, err := suite.ParseSignatureKey(tc.SignaturePriv)
	if err != nil {
		return fmt.Errorf("signature_priv: %w", err)
	}
	var opts mls.JoinOptions
	if tc.RatchetTree != nil {
		if opts.RatchetTree, err = mls.DecodeRatchetTree(tc.RatchetTree); err != nil {
			return fmt.Errorf("ratchet_tree: %w", err)
		}
	}
	for _, p := range tc.ExternalPSKs {
		opts.PSKs = append(opts.PSKs, mls.PSKEntry{ID: p.PSKID, Secret: p.PSK})
	}
	g, err := mls.JoinFromWelcome(tc.Welcome, kpMsg.KeyPackage, &mls.KeyPackagePrivate{InitKey: initKey, EncryptionKey: encKey}, sigKey, opts, mls.GroupConfig{})
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), tc.InitialEpochAuthenticator) {
		return fmt.Errorf("initial epoch authenticator differs")
	}
	for i, ep := range tc.Epochs {
		for j, p := range ep.Proposals {
			if _, err := g.ProcessMessage(p); err != nil {
				return fmt.Errorf("epoch %d proposal %d: %w", i, j, err)
			}
		}
		if _, err := g.ProcessMessage(ep.Commit); err != nil {
			return fmt.Errorf("epoch %d commit: %w", i, err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			return fmt.Errorf("epoch %d: epoch authenticator differs", i)
		}
	}
	return nil
}

// TestPassiveClientVectors joins from each Welcome and follows every
// epoch's proposals and commit, checking epoch_authenticator after the
// join and after every epoch.
func TestPassiveClientVectors(t *testing.T) {
	files := []string{
		"passive-client-welcome.json",
		"passive-client-handling-commit.json",
		"passive-client-random.json",
		"interop-passive/application.json",
		"interop-passive/branch.json",
		"interop-passive/commit.json",
		"interop-passive/external_join.json",
		"interop-passive/external_proposals.json",
		"interop-passive/reinit.json",
		"interop-passive/welcome_join.json",
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			var cases []passiveCase
			vectortest.Load(t, file, &cases)
			count := vectortest.NewCounterIn("counts_group.json", file)
			for i := range cases {
				tc := &cases[i]
				cs := uint64(tc.CipherSuite)
				suite, err := cipher.New(cipher.CipherSuite(cs))
				if errors.Is(err, cipher.ErrUnsupportedCipherSuite) {
					count.Add(vectortest.Suite(cs) + " (unsupported)")
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := runPassive(suite, tc); err != nil {
					t.Errorf("case %d (suite %d): %v", i, cs, err)
					count.Add(vectortest.Suite(cs) + " (failed)")
					continue
				}
				count.Add(vectortest.Suite(cs))
			}
			count.Check(t, len(cases))
		})
	}
}
