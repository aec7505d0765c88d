package cipher_test

import (
	"bytes"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// The benchmarks cover the primitives a Commit's processing is built from,
// so that later Commit benchmarks can be broken down.

func benchSuites(b *testing.B) []*cipher.Suite {
	b.Helper()
	var out []*cipher.Suite
	for _, id := range []cipher.CipherSuite{1, 2} {
		s, err := cipher.New(id)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func BenchmarkExpandWithLabel(b *testing.B) {
	s := benchSuites(b)[0]
	secret := bytes.Repeat([]byte{1}, 32)
	ctx := bytes.Repeat([]byte{2}, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ExpandWithLabel(secret, "joiner", ctx, 32); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeriveTreeSecret(b *testing.B) {
	s := benchSuites(b)[0]
	secret := bytes.Repeat([]byte{1}, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.DeriveTreeSecret(secret, "secret", 7, 32); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRefHash(b *testing.B) {
	s := benchSuites(b)[0]
	value := bytes.Repeat([]byte{1}, 300)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.RefHash(cipher.ProposalRefLabel, value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHPKE(b *testing.B) {
	for _, s := range benchSuites(b) {
		key, err := s.GenerateHPKEKey()
		if err != nil {
			b.Fatal(err)
		}
		ctx := bytes.Repeat([]byte{3}, 100)
		pt := bytes.Repeat([]byte{4}, 32) // a path secret
		kemOut, ct, err := s.EncryptWithLabel(key.PublicKey(), "UpdatePathNode", ctx, pt)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("Seal/"+s.ID().String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.EncryptWithLabel(key.PublicKey(), "UpdatePathNode", ctx, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Open/"+s.ID().String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.DecryptWithLabel(key, "UpdatePathNode", ctx, kemOut, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("DeriveKeyPair/"+s.ID().String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.DeriveKeyPair(pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignature(b *testing.B) {
	for _, s := range benchSuites(b) {
		key, err := s.GenerateSignatureKey()
		if err != nil {
			b.Fatal(err)
		}
		content := bytes.Repeat([]byte{5}, 500) // a FramedContentTBS-sized input
		sig, err := s.SignWithLabel(key, "FramedContentTBS", content)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("Sign/"+s.ID().String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.SignWithLabel(key, "FramedContentTBS", content); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Verify/"+s.ID().String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.VerifyWithLabel(key.PublicKey(), "FramedContentTBS", content, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAEADSeal(b *testing.B) {
	s := benchSuites(b)[0]
	key, nonce := make([]byte, s.Nk()), make([]byte, s.Nn())
	pt := make([]byte, 1024)
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AEADSeal(dst[:0], key, nonce, nil, pt); err != nil {
			b.Fatal(err)
		}
	}
}
