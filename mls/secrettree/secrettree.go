// Package secrettree owns the secret tree of RFC 9420 section 9: the
// per-epoch tree of secrets rooted at encryption_secret, each member's
// handshake and application hash ratchets, the keys and nonces per
// generation, the sender-data key and nonce, and the reuse guard. It applies
// the deletion schedule of section 9.2: a secret is zeroed and forgotten as
// soon as it is consumed, and only a bounded, configurable window of skipped
// keys is kept for out-of-order delivery.
package secrettree

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"

	"github.com/burrow-relay/burrow/mls/cipher"
)

// Errors returned by the tree. Match them with errors.Is.
var (
	ErrLeafOutOfRange     = errors.New("mls/secrettree: leaf index out of range")
	ErrGenerationConsumed = errors.New("mls/secrettree: generation already consumed or outside the out-of-order window")
	ErrTooFarAhead        = errors.New("mls/secrettree: generation too far ahead of the ratchet")
	ErrRatchetExhausted   = errors.New("mls/secrettree: ratchet exhausted")
	ErrDropped            = errors.New("mls/secrettree: tree has been dropped")
	ErrInvalidType        = errors.New("mls/secrettree: invalid ratchet type")
)

// RatchetType selects one of a leaf's two ratchets.
type RatchetType uint8

const (
	// Handshake is the ratchet for Proposal and Commit content.
	Handshake RatchetType = iota + 1
	// Application is the ratchet for application data.
	Application
)

func (r RatchetType) String() string {
	switch r {
	case Handshake:
		return "handshake"
	case Application:
		return "application"
	}
	return fmt.Sprintf("RatchetType(%d)", uint8(r))
}

// Defaults for the zero values of Config.
const (
	DefaultMaxForward       = 1024
	DefaultOutOfOrderWindow = 32
)

// Config bounds the work and memory a ratchet may spend on reordered
// messages (RFC 9420 section 15.3).
type Config struct {
	// MaxForward is how many generations past the next expected one a
	// received message may jump. Zero means DefaultMaxForward.
	MaxForward uint32
	// OutOfOrderWindow is how many generations below the newest one a
	// ratchet keeps unconsumed keys for. Zero means DefaultOutOfOrderWindow;
	// a negative value keeps none (strictly in-order delivery).
	OutOfOrderWindow int
}

func (c Config) withDefaults() Config {
	if c.MaxForward == 0 {
		c.MaxForward = DefaultMaxForward
	}
	if c.OutOfOrderWindow == 0 {
		c.OutOfOrderWindow = DefaultOutOfOrderWindow
	}
	if c.OutOfOrderWindow < 0 {
		c.OutOfOrderWindow = 0
	}
	return c
}

// KeyNonce is the AEAD key and nonce of one ratchet generation. Its fields
// print redacted.
type KeyNonce struct {
	Generation uint32
	Key        cipher.Secret
	Nonce      cipher.Secret
}

// Zero overwrites the key and nonce.
func (kn *KeyNonce) Zero() {
	kn.Key.Zero()
	kn.Nonce.Zero()
}

// ratchet is one hash ratchet: the secret for generation next, plus skipped
// generations' keys kept for late messages.
type ratchet struct {
	secret    cipher.Secret
	next      uint32
	exhausted bool // next would overflow uint32
	skipped   map[uint32]KeyNonce
}

type leafRatchets struct {
	handshake, application ratchet
}

// Tree is the secret tree of one epoch. It is not safe for concurrent use;
// the group state that owns it serialises access.
type Tree struct {
	suite     *cipher.Suite
	cfg       Config
	leafCount uint32
	// nodes holds the unconsumed node secrets in array-tree order (leaf i at
	// index 2i). A nil entry was either consumed or never derived.
	nodes    []cipher.Secret
	ratchets []*leafRatchets
	dropped  bool
}

// New returns the secret tree for a group of leafCount leaves rooted at
// encryptionSecret. The secret is copied; the caller should zero its own
// copy, which the key schedule considers consumed.
func New(suite *cipher.Suite, encryptionSecret []byte, leafCount uint32, cfg Config) (*Tree, error) {
	if leafCount == 0 || leafCount > 1<<30 {
		return nil, fmt.Errorf("%w: leaf count %d", ErrLeafOutOfRange, leafCount)
	}
	if len(encryptionSecret) != suite.Nh() {
		return nil, fmt.Errorf("mls/secrettree: encryption secret is %d bytes, want %d", len(encryptionSecret), suite.Nh())
	}
	// The tree is a full binary tree over the next power of two, as the
	// ratchet tree is (RFC 9420 section 7.8).
	width := 1 << bits.Len32(leafCount-1)
	nodes := make([]cipher.Secret, 2*width-1)
	nodes[width-1] = cipher.Secret(encryptionSecret).Clone()
	return &Tree{
		suite:     suite,
		cfg:       cfg.withDefaults(),
		leafCount: leafCount,
		nodes:     nodes,
		ratchets:  make([]*leafRatchets, leafCount),
	}, nil
}

// LeafCount returns the number of leaves the tree was created for.
func (t *Tree) LeafCount() uint32 { return t.leafCount }

// String implements fmt.Stringer without revealing any secret.
func (t Tree) String() string {
	return fmt.Sprintf("secrettree.Tree(%d leaves, redacted)", t.leafCount)
}

// GoString implements fmt.GoStringer without revealing any secret.
func (t Tree) GoString() string { return t.String() }

// Format implements fmt.Formatter so that no verb prints the node secrets.
func (t Tree) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }

// Drop zeroes and forgets every secret the tree still holds. The tree is
// unusable afterwards; call it when the epoch ends (RFC 9420 section 9.2).
func (t *Tree) Drop() {
	for i := range t.nodes {
		t.nodes[i].Zero()
		t.nodes[i] = nil
	}
	for i, lr := range t.ratchets {
		if lr != nil {
			lr.handshake.drop()
			lr.application.drop()
			t.ratchets[i] = nil
		}
	}
	t.dropped = true
}

func (r *ratchet) drop() {
	r.secret.Zero()
	r.secret = nil
	for g, kn := range r.skipped {
		kn.Zero()
		delete(r.skipped, g)
	}
}

// level of node x in the array tree: the number of trailing one bits.
func level(x int) int { return bits.TrailingZeros(^uint(x)) }

// parent of x in a full array tree (x is not the root).
func parent(x int) int {
	k := level(x)
	b := (x >> (k + 1)) & 1
	return (x | 1<<k) ^ b<<(k+1)
}

// leafSecret derives the secret of leaf's node, consuming every node secret
// on the way down from the nearest stored ancestor and keeping the siblings.
func (t *Tree) leafSecret(leaf uint32) (cipher.Secret, error) {
	target := 2 * int(leaf)
	a := target
	root := len(t.nodes) / 2
	for t.nodes[a] == nil {
		if a == root {
			// Unreachable while the leaf's ratchets are absent: the path
			// secrets are only consumed together with creating them.
			return nil, fmt.Errorf("mls/secrettree: no stored ancestor for leaf %d", leaf)
		}
		a = parent(a)
	}
	for a != target {
		k := level(a)
		left, right := a^(1<<(k-1)), a^(3<<(k-1))
		ls, err := t.suite.ExpandWithLabel(t.nodes[a], "tree", []byte("left"), t.suite.Nh())
		if err != nil {
			return nil, err
		}
		rs, err := t.suite.ExpandWithLabel(t.nodes[a], "tree", []byte("right"), t.suite.Nh())
		if err != nil {
			return nil, err
		}
		t.nodes[a].Zero()
		t.nodes[a] = nil
		t.nodes[left], t.nodes[right] = ls, rs
		if target < a {
			a = left
		} else {
			a = right
		}
	}
	s := t.nodes[target]
	t.nodes[target] = nil
	return s, nil
}

// ratchetFor returns leaf's ratchet of type typ, initialising both of the
// leaf's ratchets (and consuming the leaf secret) on first use.
func (t *Tree) ratchetFor(leaf uint32, typ RatchetType) (*ratchet, error) {
	if t.dropped {
		return nil, ErrDropped
	}
	if leaf >= t.leafCount {
		return nil, fmt.Errorf("%w: leaf %d of %d", ErrLeafOutOfRange, leaf, t.leafCount)
	}
	if typ != Handshake && typ != Application {
		return nil, fmt.Errorf("%w: %d", ErrInvalidType, typ)
	}
	lr := t.ratchets[leaf]
	if lr == nil {
		ls, err := t.leafSecret(leaf)
		if err != nil {
			return nil, err
		}
		hs, err := t.suite.ExpandWithLabel(ls, "handshake", nil, t.suite.Nh())
		if err != nil {
			return nil, err
		}
		as, err := t.suite.ExpandWithLabel(ls, "application", nil, t.suite.Nh())
		if err != nil {
			return nil, err
		}
		ls.Zero()
		lr = &leafRatchets{handshake: ratchet{secret: hs}, application: ratchet{secret: as}}
		t.ratchets[leaf] = lr
	}
	if typ == Handshake {
		return &lr.handshake, nil
	}
	return &lr.application, nil
}

// keyNonce derives the key and nonce of the ratchet's current generation.
func (t *Tree) keyNonce(r *ratchet) (KeyNonce, error) {
	key, err := t.suite.DeriveTreeSecret(r.secret, "key", r.next, t.suite.Nk())
	if err != nil {
		return KeyNonce{}, err
	}
	nonce, err := t.suite.DeriveTreeSecret(r.secret, "nonce", r.next, t.suite.Nn())
	if err != nil {
		return KeyNonce{}, err
	}
	return KeyNonce{Generation: r.next, Key: key, Nonce: nonce}, nil
}

// step derives the current generation's key and nonce, then replaces the
// ratchet secret by the next one (consuming it).
func (t *Tree) step(r *ratchet) (KeyNonce, error) {
	if r.exhausted {
		return KeyNonce{}, ErrRatchetExhausted
	}
	kn, err := t.keyNonce(r)
	if err != nil {
		return KeyNonce{}, err
	}
	next, err := t.suite.DeriveTreeSecret(r.secret, "secret", r.next, t.suite.Nh())
	if err != nil {
		kn.Zero()
		return KeyNonce{}, err
	}
	r.secret.Zero()
	r.secret = next
	if r.next == math.MaxUint32 {
		r.exhausted = true
		r.secret.Zero()
	} else {
		r.next++
	}
	return kn, nil
}

// advance moves r forward so that generation's key is in r.skipped,
// keeping skipped keys only inside the out-of-order window.
func (t *Tree) advance(r *ratchet, generation uint32) error {
	if generation < r.next || (r.exhausted && generation >= r.next) {
		return nil
	}
	if generation-r.next > t.cfg.MaxForward {
		return fmt.Errorf("%w: generation %d, next %d, limit %d", ErrTooFarAhead, generation, r.next, t.cfg.MaxForward)
	}
	window := uint32(t.cfg.OutOfOrderWindow)
	for !r.exhausted && r.next <= generation {
		g := r.next
		kn, err := t.step(r)
		if err != nil {
			return err
		}
		if g == generation || generation-g <= window {
			if r.skipped == nil {
				r.skipped = make(map[uint32]KeyNonce)
			}
			r.skipped[g] = kn
		} else {
			kn.Zero()
		}
		if g == math.MaxUint32 {
			break
		}
	}
	// Forget keys that fell out of the window behind the newest generation.
	for g, kn := range r.skipped {
		if g < generation && generation-g > window {
			kn.Zero()
			delete(r.skipped, g)
		}
	}
	return nil
}

// Take returns the key and nonce of generation in leaf's ratchet of type typ
// for decrypting a received message, and deletes them from the tree: the
// same generation can never be obtained again. Generations skipped on the
// way are kept, within the out-of-order window, for late messages.
//
// Prefer Open, which consumes the key only when decryption succeeds.
func (t *Tree) Take(leaf uint32, typ RatchetType, generation uint32) (KeyNonce, error) {
	r, err := t.ratchetFor(leaf, typ)
	if err != nil {
		return KeyNonce{}, err
	}
	if err := t.advance(r, generation); err != nil {
		return KeyNonce{}, err
	}
	kn, ok := r.skipped[generation]
	if !ok {
		return KeyNonce{}, fmt.Errorf("%w: leaf %d %v generation %d", ErrGenerationConsumed, leaf, typ, generation)
	}
	delete(r.skipped, generation)
	return kn, nil
}

// Next returns the key and nonce of the next unused generation of leaf's
// ratchet of type typ, for encrypting an outgoing message, and consumes it.
func (t *Tree) Next(leaf uint32, typ RatchetType) (KeyNonce, error) {
	r, err := t.ratchetFor(leaf, typ)
	if err != nil {
		return KeyNonce{}, err
	}
	return t.step(r)
}

// Seal encrypts plaintext as the next generation of leaf's ratchet of type
// typ, with the reuse guard XORed into the nonce (RFC 9420 section 6.3.1).
// The key and nonce are deleted before Seal returns.
func (t *Tree) Seal(leaf uint32, typ RatchetType, reuseGuard [4]byte, aad, plaintext []byte) (generation uint32, ciphertext []byte, err error) {
	kn, err := t.Next(leaf, typ)
	if err != nil {
		return 0, nil, err
	}
	defer kn.Zero()
	nonce := ApplyReuseGuard(kn.Nonce, reuseGuard)
	defer nonce.Zero()
	ct, err := t.suite.AEADSeal(nil, kn.Key, nonce, aad, plaintext)
	if err != nil {
		return 0, nil, err
	}
	return kn.Generation, ct, nil
}

// Open decrypts ciphertext sent by leaf at generation with the given reuse
// guard. The key is consumed (deleted) only if decryption succeeds, so a
// forged message cannot burn a key a genuine late message still needs.
func (t *Tree) Open(leaf uint32, typ RatchetType, generation uint32, reuseGuard [4]byte, aad, ciphertext []byte) ([]byte, error) {
	r, err := t.ratchetFor(leaf, typ)
	if err != nil {
		return nil, err
	}
	if err := t.advance(r, generation); err != nil {
		return nil, err
	}
	kn, ok := r.skipped[generation]
	if !ok {
		return nil, fmt.Errorf("%w: leaf %d %v generation %d", ErrGenerationConsumed, leaf, typ, generation)
	}
	nonce := ApplyReuseGuard(kn.Nonce, reuseGuard)
	defer nonce.Zero()
	pt, err := t.suite.AEADOpen(nil, kn.Key, nonce, aad, ciphertext)
	if err != nil {
		return nil, err
	}
	delete(r.skipped, generation)
	kn.Zero()
	return pt, nil
}

// ApplyReuseGuard returns a copy of nonce with its first four bytes XORed
// with guard (RFC 9420 section 6.3.1).
func ApplyReuseGuard(nonce []byte, guard [4]byte) cipher.Secret {
	out := cipher.Secret(nonce).Clone()
	for i := 0; i < 4 && i < len(out); i++ {
		out[i] ^= guard[i]
	}
	return out
}

// NewReuseGuard returns a fresh random reuse guard.
func NewReuseGuard() ([4]byte, error) {
	var g [4]byte
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("mls/secrettree: reuse guard: %w", err)
	}
	return g, nil
}

// SenderDataKeyNonce derives the key and nonce that protect a
// PrivateMessage's SenderData from the epoch's sender_data_secret and the
// first Nh bytes of the content ciphertext (all of it if shorter), as RFC
// 9420 section 6.3.2 defines.
func SenderDataKeyNonce(suite *cipher.Suite, senderDataSecret, ciphertext []byte) (key, nonce cipher.Secret, err error) {
	sample := ciphertext[:min(len(ciphertext), suite.Nh())]
	key, err = suite.ExpandWithLabel(senderDataSecret, "key", sample, suite.Nk())
	if err != nil {
		return nil, nil, err
	}
	nonce, err = suite.ExpandWithLabel(senderDataSecret, "nonce", sample, suite.Nn())
	if err != nil {
		key.Zero()
		return nil, nil, err
	}
	return key, nonce, nil
}
