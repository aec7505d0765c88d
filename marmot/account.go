package marmot

import (
	"encoding/hex"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"
)

// Signer is a Marmot account: a Nostr key that signs events (KeyPackage
// events, seals, identity-proof templates) and runs NIP-44 for gift wraps.
// Account implements it with a secret key in memory; a remote signer can
// implement it too.
type Signer interface {
	// PublicKey is the account identity.
	PublicKey() Pubkey
	// SignEvent sets ev's pubkey, id and signature.
	SignEvent(ev *nostr.Event) error
	// Encrypt and Decrypt are NIP-44 v2 with the peer's hex pubkey.
	Encrypt(plaintext, peer string) (string, error)
	Decrypt(ciphertext, peer string) (string, error)
}

// Account is a Signer holding the account's secret key.
type Account struct {
	secret string // hex, as go-nostr takes it
	pub    Pubkey
}

// NewAccount makes an account with a fresh random key.
func NewAccount() (*Account, error) {
	sk, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("marmot: account key: %w", err)
	}
	return accountFrom(sk), nil
}

// AccountFromHex loads an account from its secret key in hex.
func AccountFromHex(secret string) (*Account, error) {
	b, err := hex.DecodeString(secret)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("marmot: account secret key must be 64 hex characters")
	}
	sk, _ := btcec.PrivKeyFromBytes(b)
	if sk.Key.IsZero() {
		return nil, fmt.Errorf("marmot: account secret key is zero")
	}
	return accountFrom(sk), nil
}

func accountFrom(sk *btcec.PrivateKey) *Account {
	a := &Account{secret: hex.EncodeToString(sk.Serialize())}
	copy(a.pub[:], schnorr.SerializePubKey(sk.PubKey()))
	return a
}

// PublicKey implements Signer.
func (a *Account) PublicKey() Pubkey { return a.pub }

// SignEvent implements Signer.
func (a *Account) SignEvent(ev *nostr.Event) error { return ev.Sign(a.secret) }

// Encrypt implements Signer.
func (a *Account) Encrypt(plaintext, peer string) (string, error) {
	ck, err := nip44.GenerateConversationKey(peer, a.secret)
	if err != nil {
		return "", err
	}
	return nip44.Encrypt(plaintext, ck)
}

// Decrypt implements Signer.
func (a *Account) Decrypt(ciphertext, peer string) (string, error) {
	ck, err := nip44.GenerateConversationKey(peer, a.secret)
	if err != nil {
		return "", err
	}
	return nip44.Decrypt(ciphertext, ck)
}

// Hex is the key in lowercase hex, as Nostr events carry it.
func (p Pubkey) Hex() string { return hex.EncodeToString(p[:]) }

// ParsePubkey reads a pubkey from 64 lowercase hex characters.
func ParsePubkey(s string) (Pubkey, error) {
	var p Pubkey
	if len(s) != 64 || !isLowerHex(s) {
		return p, fmt.Errorf("pubkey %s is not 64 lowercase hex characters", quote(s))
	}
	_, _ = hex.Decode(p[:], []byte(s))
	return p, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
