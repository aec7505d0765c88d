package cipher_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

type hexb = vectortest.Hex

type cryptoBasics struct {
	CipherSuite uint16 `json:"cipher_suite"`
	RefHash     struct {
		Label string `json:"label"`
		Value hexb   `json:"value"`
		Out   hexb   `json:"out"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  hexb            `json:"secret"`
		Label   string          `json:"label"`
		Context hexb            `json:"context"`
		Length  vectortest.Uint `json:"length"`
		Out     hexb            `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret hexb   `json:"secret"`
		Label  string `json:"label"`
		Out    hexb   `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     hexb            `json:"secret"`
		Label      string          `json:"label"`
		Generation vectortest.Uint `json:"generation"`
		Length     vectortest.Uint `json:"length"`
		Out        hexb            `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      hexb   `json:"priv"`
		Pub       hexb   `json:"pub"`
		Content   hexb   `json:"content"`
		Label     string `json:"label"`
		Signature hexb   `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       hexb   `json:"priv"`
		Pub        hexb   `json:"pub"`
		Label      string `json:"label"`
		Context    hexb   `json:"context"`
		Plaintext  hexb   `json:"plaintext"`
		KEMOutput  hexb   `json:"kem_output"`
		Ciphertext hexb   `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

// suiteOrUnsupported returns the suite, or nil after checking that a
// registered-but-unimplemented suite is rejected with the right error.
func suiteOrUnsupported(t *testing.T, id uint16) *cipher.Suite {
	t.Helper()
	s, err := cipher.New(cipher.CipherSuite(id))
	if err == nil {
		return s
	}
	if !errors.Is(err, cipher.ErrUnsupportedCipherSuite) || cipher.CipherSuite(id).Supported() {
		t.Fatalf("suite %d: unexpected error %v", id, err)
	}
	return nil
}

func TestCryptoBasicsVectors(t *testing.T) {
	var cases []cryptoBasics
	vectortest.Load(t, "crypto-basics.json", &cases)
	const file = "crypto-basics.json"
	counter := vectortest.NewSuiteCounter()
	for _, tc := range cases {
		s := suiteOrUnsupported(t, tc.CipherSuite)
		if s == nil {
			counter.Unsupported(file, tc.CipherSuite)
			continue
		}
		ok := t.Run(s.ID().String(), func(t *testing.T) {
			rh, err := s.RefHash(tc.RefHash.Label, tc.RefHash.Value)
			if err != nil || !bytes.Equal(rh, tc.RefHash.Out) {
				t.Errorf("RefHash = %x, %v; want %x", rh, err, tc.RefHash.Out)
			}

			e := tc.ExpandWithLabel
			out, err := s.ExpandWithLabel(e.Secret, e.Label, e.Context, int(e.Length))
			if err != nil || !out.Equal(e.Out) {
				t.Errorf("ExpandWithLabel: err %v, match %v", err, out.Equal(e.Out))
			}

			d := tc.DeriveSecret
			out, err = s.DeriveSecret(d.Secret, d.Label)
			if err != nil || !out.Equal(d.Out) {
				t.Errorf("DeriveSecret: err %v, match %v", err, out.Equal(d.Out))
			}

			dt := tc.DeriveTreeSecret
			out, err = s.DeriveTreeSecret(dt.Secret, dt.Label, uint32(dt.Generation), int(dt.Length))
			if err != nil || !out.Equal(dt.Out) {
				t.Errorf("DeriveTreeSecret: err %v, match %v", err, out.Equal(dt.Out))
			}

			sw := tc.SignWithLabel
			if err := s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, sw.Signature); err != nil {
				t.Errorf("VerifyWithLabel(vector signature): %v", err)
			}
			key, err := s.ParseSignatureKey(sw.Priv)
			if err != nil {
				t.Fatalf("ParseSignatureKey: %v", err)
			}
			if !bytes.Equal(key.PublicKey(), sw.Pub) {
				t.Errorf("signature public key = %x, want %x", key.PublicKey(), sw.Pub)
			}
			if kb, err := key.Bytes(); err != nil || !kb.Equal(sw.Priv) {
				t.Errorf("signature key does not round-trip: %v", err)
			}
			sig, err := s.SignWithLabel(key, sw.Label, sw.Content)
			if err != nil {
				t.Fatalf("SignWithLabel: %v", err)
			}
			if err := s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, sig); err != nil {
				t.Errorf("VerifyWithLabel(own signature): %v", err)
			}
			if err := s.VerifyWithLabel(sw.Pub, sw.Label+"x", sw.Content, sig); !errors.Is(err, cipher.ErrInvalidSignature) {
				t.Errorf("VerifyWithLabel with another label = %v, want ErrInvalidSignature", err)
			}

			ew := tc.EncryptWithLabel
			hk, err := s.ParseHPKEPrivateKey(ew.Priv)
			if err != nil {
				t.Fatalf("ParseHPKEPrivateKey: %v", err)
			}
			if !bytes.Equal(hk.PublicKey(), ew.Pub) {
				t.Errorf("HPKE public key = %x, want %x", hk.PublicKey(), ew.Pub)
			}
			// SerializePrivateKey clamps X25519 scalars (RFC 9180 section
			// 7.1.2) while the vectors store them unclamped, so compare the
			// key the bytes decode to rather than the bytes.
			kb, err := hk.Bytes()
			if err != nil {
				t.Fatalf("HPKE key Bytes: %v", err)
			}
			if hk2, err := s.ParseHPKEPrivateKey(kb); err != nil || !bytes.Equal(hk2.PublicKey(), ew.Pub) {
				t.Errorf("HPKE key does not round-trip: %v", err)
			}
			pt, err := s.DecryptWithLabel(hk, ew.Label, ew.Context, ew.KEMOutput, ew.Ciphertext)
			if err != nil || !bytes.Equal(pt, ew.Plaintext) {
				t.Errorf("DecryptWithLabel(vector) = %x, %v; want %x", pt, err, ew.Plaintext)
			}
			kemOut, ct, err := s.EncryptWithLabel(ew.Pub, ew.Label, ew.Context, ew.Plaintext)
			if err != nil {
				t.Fatalf("EncryptWithLabel: %v", err)
			}
			pt, err = s.DecryptWithLabel(hk, ew.Label, ew.Context, kemOut, ct)
			if err != nil || !bytes.Equal(pt, ew.Plaintext) {
				t.Errorf("DecryptWithLabel(own) = %x, %v; want %x", pt, err, ew.Plaintext)
			}
			if _, err := s.DecryptWithLabel(hk, ew.Label, []byte("other context"), kemOut, ct); !errors.Is(err, cipher.ErrDecrypt) {
				t.Errorf("DecryptWithLabel with another context = %v, want ErrDecrypt", err)
			}
		})
		if ok {
			counter.Ran(file, tc.CipherSuite)
		}
	}
	counter.Check(t, "counts_crypto.json", file)
}
