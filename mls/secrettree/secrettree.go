// Package secrettree owns the secret tree of RFC 9420 section 9: the
// per-epoch tree of secrets rooted at encryption_secret, each member's
// handshake and application hash ratchets, the keys and nonces per
// generation, the sender-data key and nonce, and the reuse guard. It applies
// the deletion schedule of section 9.2: a secret is zeroed and forgotten as
// soon as it is consumed, and only a bounded, configurable window of skipped
// keys is kept for out-of-order delivery. A received message is opened on a
// tentative ratchet (Attempt): nothing is consumed or pruned unless its AEAD
// opens and the caller commits the attempt, and a generation too far ahead
// is refused before any derivation. The tree's state can be serialized and
// restored exactly.
package secrettree

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/bits"
	"slices"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
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
	DefaultMaxForward       = 1000
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
	// width is the number of nodes of the full array tree over leafCount
	// leaves (leaf i at index 2i).
	width int
	// nodes holds the unconsumed node secrets by array index; an absent
	// node was either consumed or never derived. Only a few are held at a
	// time (the root, then the siblings of the paths walked), so a map
	// costs far less than a slot per node in a large group.
	nodes map[int]cipher.Secret
	// ratchets holds the ratchets of the leaves that have used them.
	ratchets map[uint32]*leafRatchets
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
	return &Tree{
		suite:     suite,
		cfg:       cfg.withDefaults(),
		leafCount: leafCount,
		width:     2*width - 1,
		nodes:     map[int]cipher.Secret{width - 1: cipher.Secret(encryptionSecret).Clone()},
		ratchets:  map[uint32]*leafRatchets{},
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
	for i, s := range t.nodes {
		s.Zero()
		delete(t.nodes, i)
	}
	for i, lr := range t.ratchets {
		lr.handshake.drop()
		lr.application.drop()
		delete(t.ratchets, i)
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

// nodeChange is one node secret to store (nil: delete) when an attempt
// commits.
type nodeChange struct {
	index  int
	secret cipher.Secret
}

// leafSecret derives the secret of leaf's node without changing the tree:
// it returns the secret and the node changes that consume every node
// secret on the way down from the nearest stored ancestor and keep the
// siblings.
func (t *Tree) leafSecret(leaf uint32) (cipher.Secret, []nodeChange, error) {
	target := 2 * int(leaf)
	a := target
	root := t.width / 2
	for t.nodes[a] == nil {
		if a == root {
			// Unreachable while the leaf's ratchets are absent: the path
			// secrets are only consumed together with creating them.
			return nil, nil, fmt.Errorf("mls/secrettree: no stored ancestor for leaf %d", leaf)
		}
		a = parent(a)
	}
	var changes []nodeChange
	fail := func(err error) (cipher.Secret, []nodeChange, error) {
		for _, c := range changes {
			c.secret.Zero()
		}
		return nil, nil, err
	}
	cur := t.nodes[a]
	changes = append(changes, nodeChange{index: a})
	for a != target {
		k := level(a)
		left, right := a^(1<<(k-1)), a^(3<<(k-1))
		ls, err := t.suite.ExpandWithLabel(cur, "tree", []byte("left"), t.suite.Nh())
		if err != nil {
			return fail(err)
		}
		rs, err := t.suite.ExpandWithLabel(cur, "tree", []byte("right"), t.suite.Nh())
		if err != nil {
			ls.Zero()
			return fail(err)
		}
		// The child on the way down is consumed in turn; its sibling is kept.
		if target < a {
			a, cur = left, ls
			changes = append(changes, nodeChange{index: right, secret: rs}, nodeChange{index: left})
		} else {
			a, cur = right, rs
			changes = append(changes, nodeChange{index: left, secret: ls}, nodeChange{index: right})
		}
		if a != target {
			// cur is only needed to derive the next level.
			defer cur.Zero()
		}
	}
	if len(changes) == 1 {
		return cur.Clone(), changes, nil // the leaf's own secret was stored
	}
	return cur, changes, nil
}

// checkLeaf validates the arguments every ratchet access shares.
func (t *Tree) checkLeaf(leaf uint32, typ RatchetType) error {
	if t.dropped {
		return ErrDropped
	}
	if leaf >= t.leafCount {
		return fmt.Errorf("%w: leaf %d of %d", ErrLeafOutOfRange, leaf, t.leafCount)
	}
	if typ != Handshake && typ != Application {
		return fmt.Errorf("%w: %d", ErrInvalidType, typ)
	}
	return nil
}

// newLeafRatchets derives leaf's two ratchets without changing the tree;
// the node changes consume the leaf secret when applied.
func (t *Tree) newLeafRatchets(leaf uint32) (*leafRatchets, []nodeChange, error) {
	ls, changes, err := t.leafSecret(leaf)
	if err != nil {
		return nil, nil, err
	}
	defer ls.Zero()
	hs, err := t.suite.ExpandWithLabel(ls, "handshake", nil, t.suite.Nh())
	if err != nil {
		zeroChanges(changes)
		return nil, nil, err
	}
	as, err := t.suite.ExpandWithLabel(ls, "application", nil, t.suite.Nh())
	if err != nil {
		hs.Zero()
		zeroChanges(changes)
		return nil, nil, err
	}
	return &leafRatchets{handshake: ratchet{secret: hs}, application: ratchet{secret: as}}, changes, nil
}

func zeroChanges(changes []nodeChange) {
	for _, c := range changes {
		c.secret.Zero()
	}
}

func (lr *leafRatchets) get(typ RatchetType) *ratchet {
	if typ == Handshake {
		return &lr.handshake
	}
	return &lr.application
}

// ratchetFor returns leaf's ratchet of type typ for sending, initialising
// both of the leaf's ratchets (and consuming the leaf secret) on first use.
func (t *Tree) ratchetFor(leaf uint32, typ RatchetType) (*ratchet, error) {
	if err := t.checkLeaf(leaf, typ); err != nil {
		return nil, err
	}
	lr := t.ratchets[leaf]
	if lr == nil {
		var changes []nodeChange
		var err error
		if lr, changes, err = t.newLeafRatchets(leaf); err != nil {
			return nil, err
		}
		t.applyNodes(changes)
		t.ratchets[leaf] = lr
	}
	return lr.get(typ), nil
}

// applyNodes stores the node changes of a committed derivation.
func (t *Tree) applyNodes(changes []nodeChange) {
	for _, c := range changes {
		t.nodes[c.index].Zero()
		if c.secret == nil {
			delete(t.nodes, c.index)
		} else {
			t.nodes[c.index] = c.secret
		}
	}
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

// Attempt is a receiving key derived without changing the tree: the key
// and nonce of one generation, and what taking it changes (the node
// secrets consumed to reach the leaf, the ratchet moved forward, the keys
// of skipped generations kept inside the window). Commit applies those
// changes and consumes the key; Discard forgets them, leaving the tree as
// it was. One of the two must be called, and nothing else may use the
// tree in between.
type Attempt struct {
	t      *Tree
	leaf   uint32
	typ    RatchetType
	kn     KeyNonce
	nodes  []nodeChange  // node secrets to store, when the leaf's ratchets are new
	lr     *leafRatchets // new ratchets of the leaf, or nil
	moved  *ratchet      // the ratchet after moving forward, or nil
	kept   map[uint32]KeyNonce
	stored bool // the key came from the stored skipped keys
	done   bool
}

// Key returns the attempt's key and nonce; they stay owned by the attempt.
func (a *Attempt) Key() KeyNonce { return a.kn }

// Commit applies the attempt: the key is consumed and can never be
// derived again.
func (a *Attempt) Commit() {
	if a.done {
		return
	}
	a.done = true
	t := a.t
	if t.dropped {
		a.zero()
		return
	}
	if a.lr != nil {
		t.applyNodes(a.nodes)
		t.ratchets[a.leaf] = a.lr
	}
	r := t.ratchets[a.leaf].get(a.typ)
	if a.stored {
		kn := r.skipped[a.kn.Generation]
		delete(r.skipped, a.kn.Generation)
		kn.Zero()
		a.kn.Zero()
		return
	}
	if a.moved != nil {
		r.secret.Zero()
		r.secret, r.next, r.exhausted = a.moved.secret, a.moved.next, a.moved.exhausted
	}
	if len(a.kept) > 0 && r.skipped == nil {
		r.skipped = make(map[uint32]KeyNonce, len(a.kept))
	}
	for g, kn := range a.kept {
		r.skipped[g] = kn
	}
	// Forget keys that fell out of the window behind the newest generation.
	window := uint32(t.cfg.OutOfOrderWindow)
	for g, kn := range r.skipped {
		if g < a.kn.Generation && a.kn.Generation-g > window {
			kn.Zero()
			delete(r.skipped, g)
		}
	}
	a.kn.Zero()
}

// Discard forgets the attempt; the tree is unchanged.
func (a *Attempt) Discard() {
	if a.done {
		return
	}
	a.done = true
	a.zero()
}

func (a *Attempt) zero() {
	a.kn.Zero()
	zeroChanges(a.nodes)
	if a.lr != nil {
		a.lr.handshake.drop()
		a.lr.application.drop()
	}
	if a.moved != nil {
		a.moved.secret.Zero()
	}
	for _, kn := range a.kept {
		kn.Zero()
	}
}

// Attempt derives the key and nonce of generation in leaf's ratchet of type
// typ for a received message without changing the tree. A generation more
// than MaxForward past the ratchet is refused before any derivation; one
// below it must be a skipped key still inside the window.
func (t *Tree) Attempt(leaf uint32, typ RatchetType, generation uint32) (*Attempt, error) {
	if err := t.checkLeaf(leaf, typ); err != nil {
		return nil, err
	}
	a := &Attempt{t: t, leaf: leaf, typ: typ}
	var r *ratchet
	if lr := t.ratchets[leaf]; lr != nil {
		r = lr.get(typ)
	}
	next, exhausted := uint32(0), false
	if r != nil {
		next, exhausted = r.next, r.exhausted
	}
	if generation < next || (exhausted && generation >= next) {
		if r != nil {
			if kn, ok := r.skipped[generation]; ok {
				a.stored = true
				a.kn = KeyNonce{Generation: generation, Key: kn.Key.Clone(), Nonce: kn.Nonce.Clone()}
				return a, nil
			}
		}
		return nil, fmt.Errorf("%w: leaf %d %v generation %d", ErrGenerationConsumed, leaf, typ, generation)
	}
	if generation-next > t.cfg.MaxForward {
		return nil, fmt.Errorf("%w: generation %d, next %d, limit %d", ErrTooFarAhead, generation, next, t.cfg.MaxForward)
	}
	if r == nil {
		var err error
		if a.lr, a.nodes, err = t.newLeafRatchets(leaf); err != nil {
			return nil, err
		}
		r = a.lr.get(typ)
		a.moved = r // the new ratchet itself moves; no copy needed
	} else {
		a.moved = &ratchet{secret: r.secret.Clone(), next: r.next, exhausted: r.exhausted}
	}
	window := uint32(t.cfg.OutOfOrderWindow)
	m := a.moved
	for !m.exhausted && m.next <= generation {
		g := m.next
		kn, err := t.step(m)
		if err != nil {
			a.Discard()
			return nil, err
		}
		switch {
		case g == generation:
			a.kn = kn
		case generation-g <= window:
			if a.kept == nil {
				a.kept = map[uint32]KeyNonce{}
			}
			a.kept[g] = kn
		default:
			kn.Zero()
		}
		if g == math.MaxUint32 {
			break
		}
	}
	if a.lr != nil {
		a.moved = nil // the ratchet is installed as it stands
	}
	return a, nil
}

// Take returns the key and nonce of generation in leaf's ratchet of type typ
// for decrypting a received message, and deletes them from the tree: the
// same generation can never be obtained again. Generations skipped on the
// way are kept, within the out-of-order window, for late messages.
//
// Prefer Open, which consumes the key only when decryption succeeds.
func (t *Tree) Take(leaf uint32, typ RatchetType, generation uint32) (KeyNonce, error) {
	a, err := t.Attempt(leaf, typ, generation)
	if err != nil {
		return KeyNonce{}, err
	}
	kn := KeyNonce{Generation: generation, Key: a.kn.Key.Clone(), Nonce: a.kn.Nonce.Clone()}
	a.Commit()
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

// OpenAttempt decrypts ciphertext sent by leaf at generation with the
// given reuse guard on a tentative ratchet. When the AEAD opens it returns
// the plaintext and the attempt, still uncommitted: the caller commits it
// once the whole message is accepted (or discards it). When the AEAD does
// not open, nothing has changed: a forged message, even one claiming a
// far-future generation, consumes and prunes nothing.
func (t *Tree) OpenAttempt(leaf uint32, typ RatchetType, generation uint32, reuseGuard [4]byte, aad, ciphertext []byte) ([]byte, *Attempt, error) {
	a, err := t.Attempt(leaf, typ, generation)
	if err != nil {
		return nil, nil, err
	}
	nonce := ApplyReuseGuard(a.kn.Nonce, reuseGuard)
	defer nonce.Zero()
	pt, err := t.suite.AEADOpen(nil, a.kn.Key, nonce, aad, ciphertext)
	if err != nil {
		a.Discard()
		return nil, nil, err
	}
	return pt, a, nil
}

// Open is OpenAttempt followed by Commit: the key is consumed only if
// decryption succeeds.
func (t *Tree) Open(leaf uint32, typ RatchetType, generation uint32, reuseGuard [4]byte, aad, ciphertext []byte) ([]byte, error) {
	pt, a, err := t.OpenAttempt(leaf, typ, generation, reuseGuard, aad, ciphertext)
	if err != nil {
		return nil, err
	}
	a.Commit()
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

// ErrState means a serialized secret tree is malformed.
var ErrState = errors.New("mls/secrettree: invalid serialized state")

// EncodeState appends the tree's state (node secrets still held, both
// ratchets of every leaf that has used them, and their skipped keys) to w,
// in a deterministic order, for RestoreState. It holds key material: the
// caller must protect the bytes as it would the tree.
func (t *Tree) EncodeState(w *codec.Writer) {
	if t.dropped {
		w.Fail(ErrDropped)
		return
	}
	w.U32(t.leafCount)
	m := w.OpenVector()
	for _, i := range slices.Sorted(maps.Keys(t.nodes)) {
		w.U32(uint32(i))
		w.Opaque(t.nodes[i])
	}
	w.CloseVector(m)
	m = w.OpenVector()
	for _, leaf := range slices.Sorted(maps.Keys(t.ratchets)) {
		w.U32(leaf)
		t.ratchets[leaf].handshake.encode(w)
		t.ratchets[leaf].application.encode(w)
	}
	w.CloseVector(m)
}

func (r *ratchet) encode(w *codec.Writer) {
	w.Opaque(r.secret)
	w.U32(r.next)
	w.Present(r.exhausted)
	gens := make([]uint32, 0, len(r.skipped))
	for g := range r.skipped {
		gens = append(gens, g)
	}
	slices.Sort(gens)
	m := w.OpenVector()
	for _, g := range gens {
		w.U32(g)
		w.Opaque(r.skipped[g].Key)
		w.Opaque(r.skipped[g].Nonce)
	}
	w.CloseVector(m)
}

// RestoreState reads a tree written by EncodeState for a group of
// leafCount leaves (which the caller knows from the group's ratchet tree,
// so a hostile input cannot make it allocate a huge tree). Every secret is
// copied out of the input, which the caller may then zero.
func RestoreState(suite *cipher.Suite, r *codec.Reader, leafCount uint32, cfg Config) (*Tree, error) {
	got := r.U32()
	if r.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, r.Err())
	}
	if got != leafCount || leafCount == 0 || leafCount > 1<<30 {
		return nil, fmt.Errorf("%w: leaf count %d, want %d", ErrState, got, leafCount)
	}
	width := 1 << bits.Len32(leafCount-1)
	t := &Tree{suite: suite, cfg: cfg.withDefaults(), leafCount: leafCount, width: 2*width - 1,
		nodes: map[int]cipher.Secret{}, ratchets: map[uint32]*leafRatchets{}}
	bad := func(format string, args ...any) (*Tree, error) {
		t.Drop()
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrState}, args...)...)
	}
	secret := func(n int) cipher.Secret {
		b := r.Opaque()
		if r.Err() == nil && len(b) != n {
			r.Fail(fmt.Errorf("%w: secret of %d bytes, want %d", ErrState, len(b), n))
		}
		return cipher.Secret(b).Clone()
	}
	// Every list is strictly increasing, as EncodeState writes it, so that
	// one state has one encoding.
	s := r.OpenVector()
	next := uint64(0)
	for r.More() {
		i := r.U32()
		v := secret(suite.Nh())
		if r.Err() == nil && (uint64(i) >= uint64(t.width) || uint64(i) < next) {
			v.Zero()
			return bad("node %d out of range or out of order", i)
		}
		next = uint64(i) + 1
		if r.Err() == nil {
			t.nodes[int(i)] = v
		}
	}
	r.CloseVector(s)
	s = r.OpenVector()
	next = 0
	for r.More() {
		leaf := r.U32()
		lr := &leafRatchets{}
		for _, rt := range []*ratchet{&lr.handshake, &lr.application} {
			rt.secret = secret(suite.Nh())
			rt.next = r.U32()
			rt.exhausted = r.Present()
			if rt.exhausted && r.Err() == nil && !rt.secret.Equal(make([]byte, len(rt.secret))) {
				// An exhausted ratchet's secret was zeroed when it ran out.
				lr.handshake.drop()
				lr.application.drop()
				return bad("exhausted ratchet with a secret")
			}
			sk := r.OpenVector()
			nextGen := uint64(0)
			for r.More() {
				g := r.U32()
				kn := KeyNonce{Generation: g, Key: secret(suite.Nk()), Nonce: secret(suite.Nn())}
				if r.Err() != nil {
					break
				}
				if uint64(g) < nextGen || g >= rt.next && !rt.exhausted {
					kn.Zero()
					lr.handshake.drop()
					lr.application.drop()
					return bad("skipped generation %d out of order or not behind the ratchet", g)
				}
				nextGen = uint64(g) + 1
				if rt.skipped == nil {
					rt.skipped = map[uint32]KeyNonce{}
				}
				rt.skipped[g] = kn
			}
			r.CloseVector(sk)
		}
		if r.Err() == nil && (leaf >= leafCount || uint64(leaf) < next) {
			lr.handshake.drop()
			lr.application.drop()
			return bad("ratchets of leaf %d out of range or out of order", leaf)
		}
		next = uint64(leaf) + 1
		if r.Err() == nil {
			t.ratchets[leaf] = lr
		}
	}
	r.CloseVector(s)
	if err := r.Err(); err != nil {
		t.Drop()
		if errors.Is(err, ErrState) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	return t, nil
}
