package mls_test

import (
	"errors"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

// TestVerifyKeyPackageFromVectors checks KeyPackages produced by other
// implementations: the ones in welcome.json (one per suite) must verify.
// (TestWelcomeVectors is the counted run of that file.)
func TestVerifyKeyPackageFromVectors(t *testing.T) {
	var cases []struct {
		CipherSuite vectortest.Uint `json:"cipher_suite"`
		KeyPackage  vectortest.Hex  `json:"key_package"`
	}
	vectortest.Load(t, "welcome.json", &cases)
	verified := 0
	for i, tc := range cases {
		suite, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
		if errors.Is(err, cipher.ErrUnsupportedCipherSuite) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m, err := mls.DecodeMLSMessage(tc.KeyPackage)
		if err != nil || m.KeyPackage == nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if err := mls.VerifyKeyPackage(suite, m.KeyPackage, mls.LeafNodeRules{}); err != nil {
			t.Errorf("case %d (suite %d): %v", i, tc.CipherSuite, err)
		}
		verified++
	}
	if verified != 3 {
		t.Fatalf("verified %d KeyPackages, want one per supported suite", verified)
	}
}

func TestNewAndVerifyKeyPackage(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	params := mls.KeyPackageParams{
		Credential: mls.Credential{Type: mls.CredentialBasic, Identity: make([]byte, 32)},
		Capabilities: mls.Capabilities{
			Versions:     []mls.ProtocolVersion{mls.MLS10},
			CipherSuites: []mls.CipherSuite{1},
			Extensions:   []mls.ExtensionType{mls.ExtLastResort, 0xf2ee, 0x0a0a},
			Proposals:    []mls.ProposalType{mls.ProposalSelfRemove},
			Credentials:  []mls.CredentialType{mls.CredentialBasic},
		},
		Lifetime:       mls.Lifetime{NotBefore: uint64(now.Unix()) - 3600, NotAfter: uint64(now.Unix()) + 86400},
		LeafExtensions: mls.Extensions{{Type: mls.ExtApplicationID, Data: []byte{1, 'x'}}},
		Extensions:     mls.Extensions{{Type: mls.ExtLastResort}},
	}
	rules := mls.LeafNodeRules{Now: now, MaxLifetime: 90 * 24 * time.Hour}
	for _, id := range []cipher.CipherSuite{1, 2, 3} {
		suite, err := cipher.New(id)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := suite.GenerateSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		// resign refreshes both signatures after a test changed a field.
		resign := func(t *testing.T, kp *mls.KeyPackage) {
			t.Helper()
			if err := kp.Sign(suite, signer); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name  string
			alter func(t *testing.T, kp *mls.KeyPackage)
			rules mls.LeafNodeRules
			want  []error
		}{
			{"valid", func(*testing.T, *mls.KeyPackage) {}, rules, nil},
			{"version", func(t *testing.T, kp *mls.KeyPackage) { kp.Version = 2; resign(t, kp) }, rules, []error{mls.ErrInvalidKeyPackage}},
			{"cipher suite", func(t *testing.T, kp *mls.KeyPackage) { kp.CipherSuite ^= 0x10; resign(t, kp) }, rules, []error{mls.ErrInvalidKeyPackage}},
			{"kp signature", func(t *testing.T, kp *mls.KeyPackage) { kp.Signature[len(kp.Signature)-1] ^= 1 }, rules, []error{mls.ErrInvalidKeyPackage, cipher.ErrInvalidSignature}},
			{"leaf signature", func(t *testing.T, kp *mls.KeyPackage) {
				kp.LeafNode.Credential.Identity = []byte("someone else")
			}, rules, []error{mls.ErrInvalidLeafNode, cipher.ErrInvalidSignature}},
			{"leaf source", func(t *testing.T, kp *mls.KeyPackage) { kp.LeafNode.Source = mls.LeafNodeSourceUpdate; resign(t, kp) }, rules, []error{mls.ErrInvalidLeafNode}},
			{"init key reused", func(t *testing.T, kp *mls.KeyPackage) { kp.InitKey = kp.LeafNode.EncryptionKey; resign(t, kp) }, rules, []error{mls.ErrInvalidKeyPackage}},
			{"bad init key", func(t *testing.T, kp *mls.KeyPackage) { kp.InitKey = []byte{1, 2, 3}; resign(t, kp) }, rules, []error{mls.ErrInvalidKeyPackage, cipher.ErrInvalidKey}},
			{"unlisted leaf extension", func(t *testing.T, kp *mls.KeyPackage) {
				kp.LeafNode.Extensions = append(kp.LeafNode.Extensions, mls.Extension{Type: 0x7777})
				resign(t, kp)
			}, rules, []error{mls.ErrInvalidLeafNode}},
			{"repeated leaf extension", func(t *testing.T, kp *mls.KeyPackage) {
				kp.LeafNode.Extensions = append(kp.LeafNode.Extensions, kp.LeafNode.Extensions[0])
				resign(t, kp)
			}, rules, []error{mls.ErrInvalidLeafNode}},
			{"repeated kp extension", func(t *testing.T, kp *mls.KeyPackage) {
				kp.Extensions = append(kp.Extensions, kp.Extensions[0])
				resign(t, kp)
			}, rules, []error{mls.ErrInvalidKeyPackage}},
			{"unlisted credential", func(t *testing.T, kp *mls.KeyPackage) {
				kp.LeafNode.Capabilities.Credentials = []mls.CredentialType{mls.CredentialX509}
				resign(t, kp)
			}, rules, []error{mls.ErrInvalidLeafNode}},
			{"expired", func(*testing.T, *mls.KeyPackage) {}, mls.LeafNodeRules{Now: now.Add(48 * time.Hour)}, []error{mls.ErrLifetime}},
			{"not yet valid", func(*testing.T, *mls.KeyPackage) {}, mls.LeafNodeRules{Now: now.Add(-2 * time.Hour)}, []error{mls.ErrLifetime}},
			{"lifetime too long", func(*testing.T, *mls.KeyPackage) {}, mls.LeafNodeRules{MaxLifetime: time.Hour}, []error{mls.ErrLifetime}},
		}
		for _, tc := range tests {
			t.Run(suite.ID().String()+"/"+tc.name, func(t *testing.T) {
				kp, priv, err := mls.NewKeyPackage(suite, signer, params)
				if err != nil {
					t.Fatal(err)
				}
				if priv.InitKey == nil || priv.EncryptionKey == nil {
					t.Fatal("private keys missing")
				}
				// Go through the wire so a decoded value is what gets verified.
				b, err := mls.Marshal(kp)
				if err != nil {
					t.Fatal(err)
				}
				kp, err = mls.DecodeKeyPackage(b)
				if err != nil {
					t.Fatal(err)
				}
				tc.alter(t, kp)
				err = mls.VerifyKeyPackage(suite, kp, tc.rules)
				if tc.want == nil && err != nil {
					t.Fatalf("valid KeyPackage rejected: %v", err)
				}
				for _, want := range tc.want {
					if !errors.Is(err, want) {
						t.Fatalf("got %v, want %v", err, want)
					}
				}
			})
		}
	}
}

func TestVerifyIntegrityRejects(t *testing.T) {
	suite, err := cipher.New(1)
	if err != nil {
		t.Fatal(err)
	}
	caps := mls.Capabilities{
		Versions: []mls.ProtocolVersion{mls.MLS10}, CipherSuites: []mls.CipherSuite{1},
		Extensions:  []mls.ExtensionType{0xf2ee},
		Credentials: []mls.CredentialType{mls.CredentialBasic, 0xf000},
	}
	params := func(cred mls.CredentialType, c mls.Capabilities) mls.KeyPackageParams {
		return mls.KeyPackageParams{
			Credential:   mls.Credential{Type: cred, Identity: []byte("id"), Data: []byte("id")},
			Capabilities: c,
			Lifetime:     mls.Lifetime{NotAfter: 1 << 40},
		}
	}
	narrow := caps
	narrow.Credentials = []mls.CredentialType{mls.CredentialBasic}
	required, err := mls.NewExtension(mls.ExtRequiredCapabilities, &mls.RequiredCapabilities{ProposalTypes: []mls.ProposalType{mls.ProposalSelfRemove}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		sameSigner bool
		second     mls.KeyPackageParams
		exts       mls.Extensions
		want       error
	}{
		{"valid", false, params(mls.CredentialBasic, caps), mls.Extensions{{Type: 0xf2ee}}, nil},
		{"shared signature key", true, params(mls.CredentialBasic, caps), nil, mls.ErrDuplicateKey},
		{"group extension unsupported", false, params(mls.CredentialBasic, caps), mls.Extensions{{Type: 0xf2ef}}, mls.ErrInvalidLeafNode},
		{"required proposal unsupported", false, params(mls.CredentialBasic, caps), mls.Extensions{required}, mls.ErrInvalidLeafNode},
		{"credential type unsupported by a member", false, params(mls.CredentialBasic, narrow), nil, mls.ErrInvalidLeafNode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s1, err := suite.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			s2 := s1
			if !tc.sameSigner {
				if s2, err = suite.GenerateSignatureKey(); err != nil {
					t.Fatal(err)
				}
			}
			kp1, _, err := mls.NewKeyPackage(suite, s1, params(0xf000, caps))
			if err != nil {
				t.Fatal(err)
			}
			kp2, _, err := mls.NewKeyPackage(suite, s2, tc.second)
			if err != nil {
				t.Fatal(err)
			}
			tree, err := mls.NewTree(mls.RatchetTree{{Type: mls.NodeTypeLeaf, Leaf: &kp1.LeafNode}})
			if err != nil {
				t.Fatal(err)
			}
			tree.AddLeaf(&kp2.LeafNode)
			th, err := tree.TreeHash(suite)
			if err != nil {
				t.Fatal(err)
			}
			ctx := &mls.GroupContext{Version: mls.MLS10, CipherSuite: 1, GroupID: []byte("g"), TreeHash: th, Extensions: tc.exts}
			err = tree.VerifyIntegrity(suite, ctx, mls.LeafNodeRules{})
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestNewKeyPackageDefaultsVerify: a KeyPackage made from a credential alone
// gets defaults that pass verification (capabilities listing its own suite,
// version and credential type; an unbounded lifetime).
func TestNewKeyPackageDefaultsVerify(t *testing.T) {
	for _, id := range []cipher.CipherSuite{1, 2, 3} {
		suite, err := cipher.New(id)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := suite.GenerateSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		kp, _, err := mls.NewKeyPackage(suite, signer, mls.KeyPackageParams{
			Credential: mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := mls.VerifyKeyPackage(suite, kp, mls.LeafNodeRules{Now: time.Now()}); err != nil {
			t.Fatalf("suite %v: a default KeyPackage does not verify: %v", id, err)
		}
		if got := kp.LeafNode.Capabilities.CipherSuites; len(got) != 1 || got[0] != id {
			t.Fatalf("suite %v: capabilities list %v", id, got)
		}
	}
}
