package secrettree_test

import (
	"bytes"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

// BenchmarkFirstKey measures a receiver's first key from a sender in a
// 1,024-leaf group: ten node derivations down the tree plus the ratchet
// initialisation and one step.
func BenchmarkFirstKey(b *testing.B) {
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		b.Fatal(err)
	}
	secret := bytes.Repeat([]byte{7}, suite.Nh())
	b.ReportAllocs()
	for b.Loop() {
		tree, err := secrettree.New(suite, secret, 1024, secrettree.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tree.Take(517, secrettree.Handshake, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNextKey measures one ratchet step (key, nonce and next secret).
func BenchmarkNextKey(b *testing.B) {
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		b.Fatal(err)
	}
	tree, err := secrettree.New(suite, bytes.Repeat([]byte{7}, suite.Nh()), 1024, secrettree.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tree.Next(3, secrettree.Application); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSenderDataKeyNonce(b *testing.B) {
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		b.Fatal(err)
	}
	secret, ct := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := secrettree.SenderDataKeyNonce(suite, secret, ct); err != nil {
			b.Fatal(err)
		}
	}
}
