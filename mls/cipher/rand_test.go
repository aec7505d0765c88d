package cipher_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// seeded returns a reproducible randomness source.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

// TestSeededHPKESender checks the seeded HPKE sender against crypto/hpke's
// receiver for every supported suite: what it seals opens, what it exports
// the receiver exports too, the same seed gives the same bytes, and a
// wrong key or context does not open.
func TestSeededHPKESender(t *testing.T) {
	for _, cs := range []cipher.CipherSuite{1, 2, 3} {
		s, err := cipher.New(cs)
		if err != nil {
			t.Fatal(err)
		}
		recv, err := s.GenerateHPKEKeyFrom(seeded(1))
		if err != nil {
			t.Fatal(err)
		}
		kem1, ct1, err := s.EncryptWithLabelFrom(seeded(2), recv.PublicKey(), "UpdatePathNode", []byte("context"), []byte("path secret"))
		if err != nil {
			t.Fatal(err)
		}
		kem2, ct2, err := s.EncryptWithLabelFrom(seeded(2), recv.PublicKey(), "UpdatePathNode", []byte("context"), []byte("path secret"))
		if err != nil || !bytes.Equal(kem1, kem2) || !bytes.Equal(ct1, ct2) {
			t.Fatalf("suite %d: same seed, different ciphertexts (%v)", cs, err)
		}
		pt, err := s.DecryptWithLabel(recv, "UpdatePathNode", []byte("context"), kem1, ct1)
		if err != nil || string(pt) != "path secret" {
			t.Fatalf("suite %d: crypto/hpke does not open the seeded sender's ciphertext: %q, %v", cs, pt, err)
		}
		if _, err := s.DecryptWithLabel(recv, "UpdatePathNode", []byte("other"), kem1, ct1); !errors.Is(err, cipher.ErrDecrypt) {
			t.Fatalf("suite %d: another context opened: %v", cs, err)
		}
		kem3, _, err := s.EncryptWithLabelFrom(seeded(3), recv.PublicKey(), "UpdatePathNode", []byte("context"), []byte("path secret"))
		if err != nil || bytes.Equal(kem3, kem1) {
			t.Fatalf("suite %d: another seed gave the same KEM output (%v)", cs, err)
		}
		kem, exp, err := s.ExportSenderFrom(seeded(4), recv.PublicKey(), nil, "MLS 1.0 external init secret", 32)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ExportReceiver(recv, kem, nil, "MLS 1.0 external init secret", 32)
		if err != nil || !bytes.Equal(got, exp) {
			t.Fatalf("suite %d: exporter secrets differ (%v)", cs, err)
		}
		if _, _, err := s.EncryptWithLabelFrom(seeded(5), []byte{1, 2, 3}, "x", nil, nil); !errors.Is(err, cipher.ErrInvalidKey) {
			t.Fatalf("suite %d: bad public key: %v", cs, err)
		}
	}
}

// TestSeededKeysAndSignatures checks that keys drawn from the same seed
// are the same, and that signatures are deterministic in every suite.
func TestSeededKeysAndSignatures(t *testing.T) {
	for _, cs := range []cipher.CipherSuite{1, 2, 3} {
		s, err := cipher.New(cs)
		if err != nil {
			t.Fatal(err)
		}
		a, errA := s.GenerateSignatureKeyFrom(seeded(9))
		b, errB := s.GenerateSignatureKeyFrom(seeded(9))
		if errA != nil || errB != nil || !bytes.Equal(a.PublicKey(), b.PublicKey()) {
			t.Fatalf("suite %d: signature keys from one seed differ (%v, %v)", cs, errA, errB)
		}
		sig1, err1 := s.SignWithLabel(a, "L", []byte("m"))
		sig2, err2 := s.SignWithLabel(b, "L", []byte("m"))
		if err1 != nil || err2 != nil || !bytes.Equal(sig1, sig2) {
			t.Fatalf("suite %d: signatures are not deterministic", cs)
		}
		if err := s.VerifyWithLabel(a.PublicKey(), "L", []byte("m"), sig1); err != nil {
			t.Fatalf("suite %d: %v", cs, err)
		}
		h1, _ := s.GenerateHPKEKeyFrom(seeded(9))
		h2, _ := s.GenerateHPKEKeyFrom(seeded(9))
		if !bytes.Equal(h1.PublicKey(), h2.PublicKey()) {
			t.Fatalf("suite %d: HPKE keys from one seed differ", cs)
		}
	}
}
