package cipher_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
)

func allSupported(t testing.TB) []*cipher.Suite {
	t.Helper()
	var out []*cipher.Suite
	for _, id := range []cipher.CipherSuite{1, 2, 3} {
		s, err := cipher.New(id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestNewRejectsUnsupportedSuites(t *testing.T) {
	tests := []struct {
		id         cipher.CipherSuite
		registered bool
	}{
		{0x0000, false}, {0x0004, true}, {0x0005, true}, {0x0006, true}, {0x0007, true},
		{0x0008, false}, {0x0a0a, false}, {0xffff, false},
	}
	for _, tc := range tests {
		s, err := cipher.New(tc.id)
		if s != nil || !errors.Is(err, cipher.ErrUnsupportedCipherSuite) {
			t.Errorf("New(%v) = %v, %v; want ErrUnsupportedCipherSuite", tc.id, s, err)
		}
		if tc.id.Registered() != tc.registered || tc.id.Supported() {
			t.Errorf("%v: Registered=%v Supported=%v", tc.id, tc.id.Registered(), tc.id.Supported())
		}
	}
}

func TestSuiteParameters(t *testing.T) {
	tests := []struct {
		id         cipher.CipherSuite
		nh, nk, nn int
	}{
		{cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519, 32, 16, 12},
		{cipher.MLS128DHKEMP256AES128GCMSHA256P256, 32, 16, 12},
		{cipher.MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519, 32, 32, 12},
	}
	for _, tc := range tests {
		s, err := cipher.New(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID() != tc.id || s.Nh() != tc.nh || s.Nk() != tc.nk || s.Nn() != tc.nn {
			t.Errorf("%v: Nh %d Nk %d Nn %d", tc.id, s.Nh(), s.Nk(), s.Nn())
		}
	}
}

// TestGeneratedKeysRoundTrip covers key generation and (de)serialisation,
// signing and HPKE with fresh keys, for every supported suite.
func TestGeneratedKeysRoundTrip(t *testing.T) {
	for _, s := range allSupported(t) {
		t.Run(s.ID().String(), func(t *testing.T) {
			sk, err := s.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			raw, err := sk.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			sk2, err := s.ParseSignatureKey(raw)
			if err != nil || !bytes.Equal(sk2.PublicKey(), sk.PublicKey()) {
				t.Fatalf("signature key round trip: %v", err)
			}
			if err := s.ValidateSignaturePublicKey(sk.PublicKey()); err != nil {
				t.Fatal(err)
			}
			sig, err := s.SignWithLabel(sk2, "LeafNodeTBS", []byte("content"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.VerifyWithLabel(sk.PublicKey(), "LeafNodeTBS", []byte("content"), sig); err != nil {
				t.Fatal(err)
			}
			if err := s.VerifyWithLabel(sk.PublicKey(), "LeafNodeTBS", []byte("other"), sig); !errors.Is(err, cipher.ErrInvalidSignature) {
				t.Errorf("tampered content: %v, want ErrInvalidSignature", err)
			}
			if err := s.VerifyWithLabel([]byte{1, 2, 3}, "LeafNodeTBS", []byte("content"), sig); !errors.Is(err, cipher.ErrInvalidKey) {
				t.Errorf("bad public key: %v, want ErrInvalidKey", err)
			}

			hk, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.ValidateHPKEPublicKey(hk.PublicKey()); err != nil {
				t.Fatal(err)
			}
			hraw, err := hk.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			hk2, err := s.ParseHPKEPrivateKey(hraw)
			if err != nil || !bytes.Equal(hk2.PublicKey(), hk.PublicKey()) {
				t.Fatalf("HPKE key round trip: %v", err)
			}
			kemOut, ct, err := s.EncryptWithLabel(hk.PublicKey(), "UpdatePathNode", []byte("gc"), []byte("path secret"))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := s.DecryptWithLabel(hk2, "UpdatePathNode", []byte("gc"), kemOut, ct)
			if err != nil || string(pt) != "path secret" {
				t.Fatalf("DecryptWithLabel = %q, %v", pt, err)
			}
			if _, err := s.DecryptWithLabel(hk2, "Welcome", []byte("gc"), kemOut, ct); !errors.Is(err, cipher.ErrDecrypt) {
				t.Errorf("other label: %v, want ErrDecrypt", err)
			}
			if _, _, err := s.EncryptWithLabel([]byte{4, 5}, "Welcome", nil, nil); !errors.Is(err, cipher.ErrInvalidKey) {
				t.Errorf("bad HPKE public key: %v, want ErrInvalidKey", err)
			}

			enc, exp, err := s.ExportSender(hk.PublicKey(), nil, "MLS 1.0 external init secret", s.Nh())
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.ExportReceiver(hk2, enc, nil, "MLS 1.0 external init secret", s.Nh())
			if err != nil || !got.Equal(exp) {
				t.Fatalf("HPKE export mismatch: %v", err)
			}
		})
	}
}

func TestKeysAreBoundToTheirSuite(t *testing.T) {
	suites := allSupported(t)
	x25519, p256 := suites[0], suites[1]
	sk, err := p256.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x25519.SignWithLabel(sk, "l", nil); !errors.Is(err, cipher.ErrInvalidKey) {
		t.Errorf("P-256 key with Ed25519 suite: %v, want ErrInvalidKey", err)
	}
	hk, err := x25519.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := suites[2].DecryptWithLabel(hk, "l", nil, make([]byte, 32), make([]byte, 32)); !errors.Is(err, cipher.ErrInvalidKey) {
		t.Errorf("suite 1 HPKE key with suite 3: %v, want ErrInvalidKey", err)
	}
	if _, err := x25519.ParseSignatureKey(make([]byte, 31)); !errors.Is(err, cipher.ErrInvalidKey) {
		t.Errorf("short Ed25519 seed: %v, want ErrInvalidKey", err)
	}
	if _, err := p256.ParseSignatureKey(make([]byte, 32)); !errors.Is(err, cipher.ErrInvalidKey) {
		t.Errorf("zero P-256 scalar: %v, want ErrInvalidKey", err)
	}
}

func TestAEADAndMAC(t *testing.T) {
	for _, s := range allSupported(t) {
		key := bytes.Repeat([]byte{1}, s.Nk())
		nonce := bytes.Repeat([]byte{2}, s.Nn())
		ct, err := s.AEADSeal(nil, key, nonce, []byte("aad"), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := s.AEADOpen(nil, key, nonce, []byte("aad"), ct)
		if err != nil || string(pt) != "hello" {
			t.Fatalf("%v: AEADOpen = %q, %v", s.ID(), pt, err)
		}
		if _, err := s.AEADOpen(nil, key, nonce, []byte("other"), ct); !errors.Is(err, cipher.ErrDecrypt) {
			t.Errorf("%v: wrong aad: %v, want ErrDecrypt", s.ID(), err)
		}
		if _, err := s.AEADSeal(nil, key[1:], nonce, nil, nil); !errors.Is(err, cipher.ErrInvalidKey) {
			t.Errorf("%v: short key: %v, want ErrInvalidKey", s.ID(), err)
		}
		if _, err := s.AEADSeal(nil, key, nonce[1:], nil, nil); !errors.Is(err, cipher.ErrInvalidKey) {
			t.Errorf("%v: short nonce: %v, want ErrInvalidKey", s.ID(), err)
		}
		tag := s.MAC([]byte("k"), []byte("data"))
		if len(tag) != s.Nh() || !s.VerifyMAC([]byte("k"), []byte("data"), tag) || s.VerifyMAC([]byte("k"), []byte("datb"), tag) {
			t.Errorf("%v: MAC/VerifyMAC", s.ID())
		}
	}
}

func TestExpandWithLabelLengths(t *testing.T) {
	s := allSupported(t)[0]
	secret := bytes.Repeat([]byte{3}, 32)
	tests := []struct {
		length  int
		wantErr error
	}{
		{0, cipher.ErrLength}, {1, nil}, {32, nil}, {255 * 32, nil}, {255*32 + 1, cipher.ErrLength}, {-1, cipher.ErrLength},
	}
	for _, tc := range tests {
		out, err := s.ExpandWithLabel(secret, "l", nil, tc.length)
		if !errors.Is(err, tc.wantErr) || (err == nil && len(out) != tc.length) {
			t.Errorf("length %d: %d bytes, %v; want %v", tc.length, len(out), err, tc.wantErr)
		}
	}
}
