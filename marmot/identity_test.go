package marmot

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
)

// TestIdentityProofSpecVector checks the template, its id, the signature
// and the 104 bytes against the signing test vector of the account
// identity proof v2 (parres-hq/marmot app-components/
// account-identity-proof-v2.md@625f8aa, "Signing test vector": BIP-340
// secret key 3, all-zero auxiliary randomness).
func TestIdentityProofSpecVector(t *testing.T) {
	const (
		signerHex = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
		sigKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		wantID    = "b7e9a15dd85990fb0f49c33db3cc9875f73986207b038404ceb6b7fec4e0af6b"
		wantSig   = "c5315d3c85b9d4907cb03395a2a97b3ba2eab393f8e45b13a5d5233acedac60a51d2a295e1b1b5ee372d18a49bdb8041a7dba9dedce722c7c6f712f78bbdfb5d"
		wantData  = signerHex + "000000006553f100" + wantSig
	)
	signer, err := ParsePubkey(signerHex)
	if err != nil {
		t.Fatal(err)
	}
	sigKey := unhex(t, sigKeyHex)
	ev, err := proofTemplate(signer, 1700000000, mls.X25519AES128GCMSHA256Ed25519, sigKey)
	if err != nil {
		t.Fatal(err)
	}
	if id := ev.GetID(); id != wantID {
		t.Fatalf("template id %s, want %s (serialization %s)", id, wantID, ev.Serialize())
	}
	var three [32]byte
	three[31] = 3
	sk, _ := btcec.PrivKeyFromBytes(three[:])
	id := unhex(t, wantID)
	sig, err := schnorr.Sign(sk, id, schnorr.CustomNonce([32]byte{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sig.Serialize()); got != wantSig {
		t.Fatalf("signature %s, want %s", got, wantSig)
	}
	p, err := ParseIdentityProof(unhex(t, wantData))
	if err != nil {
		t.Fatal(err)
	}
	if p.Signer != signer || p.CreatedAt != 1700000000 || hex.EncodeToString(p.Marshal()) != wantData {
		t.Fatalf("decoded %+v", p)
	}
	if err := VerifyIdentityProof(p, mls.X25519AES128GCMSHA256Ed25519, sigKey); err != nil {
		t.Fatal(err)
	}
	// Every signed input matters.
	for name, f := range map[string]func() error{
		"other signature key": func() error {
			return VerifyIdentityProof(p, mls.X25519AES128GCMSHA256Ed25519, append([]byte{1}, sigKey[1:]...))
		},
		"other ciphersuite (same scheme)": func() error {
			return VerifyIdentityProof(p, mls.X25519ChaCha20Poly1305SHA256Ed25519, sigKey)
		},
		"other created_at": func() error {
			q := p
			q.CreatedAt++
			return VerifyIdentityProof(q, mls.X25519AES128GCMSHA256Ed25519, sigKey)
		},
		"flipped signature": func() error {
			q := p
			q.Signature[5] ^= 1
			return VerifyIdentityProof(q, mls.X25519AES128GCMSHA256Ed25519, sigKey)
		},
		"signer not on the curve": func() error {
			q := p
			q.Signer = Pubkey{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
			return VerifyIdentityProof(q, mls.X25519AES128GCMSHA256Ed25519, sigKey)
		},
	} {
		if err := f(); !errors.Is(err, ErrIdentityProof) {
			t.Errorf("%s: err = %v, want ErrIdentityProof", name, err)
		}
	}
}

// lyingSigner signs something other than what it is asked to.
type lyingSigner struct {
	*Account
	mutate func(*nostr.Event)
}

func (l lyingSigner) SignEvent(ev *nostr.Event) error {
	l.mutate(ev)
	return l.Account.SignEvent(ev)
}

func TestNewIdentityProofChecksTheSigner(t *testing.T) {
	acct, err := NewAccount()
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{4}, 32)
	p, err := NewIdentityProof(acct, mls.X25519AES128GCMSHA256Ed25519, key, 1700000001)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyIdentityProof(p, mls.X25519AES128GCMSHA256Ed25519, key); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]func(*nostr.Event){
		"extra tag":     func(ev *nostr.Event) { ev.Tags = append(ev.Tags, nostr.Tag{"x"}) },
		"other content": func(ev *nostr.Event) { ev.Content += "!" },
		"other time":    func(ev *nostr.Event) { ev.CreatedAt++ },
	} {
		if _, err := NewIdentityProof(lyingSigner{acct, m}, mls.X25519AES128GCMSHA256Ed25519, key, 1700000001); !errors.Is(err, ErrIdentityProof) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := NewIdentityProof(acct, mls.X25519AES128GCMSHA256Ed25519, key, 0); !errors.Is(err, ErrIdentityProof) {
		t.Errorf("created_at 0: %v", err)
	}
}

// TestVerifyLeafIdentity runs the leaf rules of the proof on KeyPackages
// built with a defect each.
func TestVerifyLeafIdentity(t *testing.T) {
	acct, other := mustAccount(t), mustAccount(t)
	b, err := NewKeyPackage(acct, KeyPackageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf := &b.KeyPackage.LeafNode
	if got, err := VerifyLeafIdentity(leaf, mls.X25519AES128GCMSHA256Ed25519); err != nil || got != acct.PublicKey() {
		t.Fatalf("VerifyLeafIdentity = %v, %v", got, err)
	}
	suite, _ := cipher.New(mls.X25519AES128GCMSHA256Ed25519)
	otherKey, _ := suite.GenerateSignatureKey()
	proofFor := func(s Signer, key []byte) []byte {
		p, err := NewIdentityProof(s, mls.X25519AES128GCMSHA256Ed25519, key, 1700000000)
		if err != nil {
			t.Fatal(err)
		}
		return p.Marshal()
	}
	dict := func(entries ...mls.ComponentData) mls.Extensions {
		e, err := mls.NewExtension(mls.ExtAppDataDictionary, &mls.AppDataDictionary{Components: entries})
		if err != nil {
			t.Fatal(err)
		}
		return mls.Extensions{e}
	}
	list := ComponentsList{ComponentAppComponents, ComponentIdentityProof}.Marshal()
	pub := acct.PublicKey()
	cases := []struct {
		name string
		edit func(l *mls.LeafNode)
	}{
		{"no dictionary", func(l *mls.LeafNode) { l.Extensions = nil }},
		{"no proof entry", func(l *mls.LeafNode) {
			l.Extensions = dict(mls.ComponentData{ComponentID: ComponentAppComponents, Data: list})
		}},
		{"0x8009 not advertised", func(l *mls.LeafNode) {
			l.Extensions = dict(mls.ComponentData{ComponentID: ComponentAppComponents, Data: ComponentsList{ComponentAppComponents}.Marshal()},
				mls.ComponentData{ComponentID: ComponentIdentityProof, Data: proofFor(acct, l.SignatureKey)})
		}},
		{"no app_components list", func(l *mls.LeafNode) {
			l.Extensions = dict(mls.ComponentData{ComponentID: ComponentIdentityProof, Data: proofFor(acct, l.SignatureKey)})
		}},
		{"proof by another account", func(l *mls.LeafNode) {
			l.Extensions = dict(mls.ComponentData{ComponentID: ComponentAppComponents, Data: list},
				mls.ComponentData{ComponentID: ComponentIdentityProof, Data: proofFor(other, l.SignatureKey)})
		}},
		{"proof for another signature key", func(l *mls.LeafNode) {
			l.Extensions = dict(mls.ComponentData{ComponentID: ComponentAppComponents, Data: list},
				mls.ComponentData{ComponentID: ComponentIdentityProof, Data: proofFor(acct, otherKey.PublicKey())})
		}},
		{"proof of 103 bytes", func(l *mls.LeafNode) {
			l.Extensions = dict(mls.ComponentData{ComponentID: ComponentAppComponents, Data: list},
				mls.ComponentData{ComponentID: ComponentIdentityProof, Data: proofFor(acct, l.SignatureKey)[:103]})
		}},
		{"proof entry twice", func(l *mls.LeafNode) {
			p := proofFor(acct, l.SignatureKey)
			l.Extensions = dict(mls.ComponentData{ComponentID: ComponentAppComponents, Data: list},
				mls.ComponentData{ComponentID: ComponentIdentityProof, Data: p}, mls.ComponentData{ComponentID: ComponentIdentityProof, Data: p})
		}},
		{"identity as hex text", func(l *mls.LeafNode) { l.Credential.Identity = []byte(pub.Hex()) }},
		{"x509 credential", func(l *mls.LeafNode) {
			l.Credential = mls.Credential{Type: mls.CredentialX509, Certificates: [][]byte{{1}}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := *leaf
			tc.edit(&l)
			if _, err := VerifyLeafIdentity(&l, mls.X25519AES128GCMSHA256Ed25519); !errors.Is(err, ErrIdentityProof) {
				t.Fatalf("err = %v, want ErrIdentityProof", err)
			}
		})
	}
}

func mustAccount(t testing.TB) *Account {
	t.Helper()
	a, err := NewAccount()
	if err != nil {
		t.Fatal(err)
	}
	return a
}
