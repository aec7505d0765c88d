package secrettree_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

// TestForgedFarFutureMessage is the attack of the review: a forged message
// claiming a far-future generation must neither consume nor prune
// anything, so every genuine message, in or out of order inside the
// window, still decrypts afterwards. A generation beyond MaxForward is
// refused before any derivation.
func TestForgedFarFutureMessage(t *testing.T) {
	cfg := secrettree.Config{OutOfOrderWindow: 10}
	_, sender := newTree(t, 4, cfg)
	_, receiver := newTree(t, 4, cfg)
	var guard [4]byte
	aad := []byte("aad")
	var cts [][]byte
	for i := range 10 {
		g, ct, err := sender.Seal(1, secrettree.Application, guard, aad, []byte{byte(i)})
		if err != nil || g != uint32(i) {
			t.Fatalf("seal %d: generation %d, %v", i, g, err)
		}
		cts = append(cts, ct)
	}
	open := func(gen int) error {
		pt, err := receiver.Open(1, secrettree.Application, uint32(gen), guard, aad, cts[gen])
		if err == nil && !bytes.Equal(pt, []byte{byte(gen)}) {
			t.Fatalf("generation %d: plaintext %x", gen, pt)
		}
		return err
	}
	// One genuine message first, so the ratchet exists and keeps skipped keys.
	if err := open(2); err != nil {
		t.Fatal(err)
	}
	before := encodeState(t, receiver)
	forged := bytes.Repeat([]byte{0xee}, len(cts[0]))
	for _, gen := range []uint32{999, 500, 5} {
		if _, err := receiver.Open(1, secrettree.Application, gen, guard, aad, forged); !errors.Is(err, cipher.ErrDecrypt) {
			t.Fatalf("forged generation %d: %v, want ErrDecrypt", gen, err)
		}
	}
	if _, err := receiver.Open(1, secrettree.Application, 3+secrettree.DefaultMaxForward+1, guard, aad, forged); !errors.Is(err, secrettree.ErrTooFarAhead) {
		t.Fatalf("beyond MaxForward: %v, want ErrTooFarAhead", err)
	}
	if !bytes.Equal(encodeState(t, receiver), before) {
		t.Fatal("a forged message changed the secret tree")
	}
	// Every genuine message still opens, out of order inside the window.
	for _, gen := range []int{9, 0, 1, 5, 3, 4, 8, 6, 7} {
		if err := open(gen); err != nil {
			t.Fatalf("genuine generation %d after the forgeries: %v", gen, err)
		}
	}
	if err := open(4); !errors.Is(err, secrettree.ErrGenerationConsumed) {
		t.Fatalf("replay: %v, want ErrGenerationConsumed", err)
	}
}

// TestTooFarAheadBeforeWork checks that a generation beyond MaxForward on
// a leaf never used is refused without deriving (and so consuming) the
// leaf's secret, and that an attempt discarded leaves the tree as it was
// while a committed one consumes the key.
func TestTooFarAheadBeforeWork(t *testing.T) {
	_, tree := newTree(t, 8, secrettree.Config{MaxForward: 10})
	before := encodeState(t, tree)
	if _, err := tree.Attempt(6, secrettree.Handshake, 11); !errors.Is(err, secrettree.ErrTooFarAhead) {
		t.Fatalf("generation 11 with MaxForward 10: %v", err)
	}
	a, err := tree.Attempt(6, secrettree.Handshake, 10)
	if err != nil {
		t.Fatal(err)
	}
	a.Discard()
	if !bytes.Equal(encodeState(t, tree), before) {
		t.Fatal("a discarded attempt changed the tree")
	}
	a, err = tree.Attempt(6, secrettree.Handshake, 10)
	if err != nil {
		t.Fatal(err)
	}
	a.Commit()
	if bytes.Equal(encodeState(t, tree), before) {
		t.Fatal("a committed attempt left the tree unchanged")
	}
	if _, err := tree.Take(6, secrettree.Handshake, 10); !errors.Is(err, secrettree.ErrGenerationConsumed) {
		t.Fatalf("generation taken twice: %v", err)
	}
}

// TestStateRoundTrip checks that a restored tree serializes to the same
// bytes and behaves like the original: the same keys at the same
// generations, skipped keys included.
func TestStateRoundTrip(t *testing.T) {
	suite, tree := newTree(t, 5, secrettree.Config{})
	for _, step := range []struct {
		leaf uint32
		gen  uint32
	}{{0, 3}, {4, 0}, {2, 7}, {2, 1}} {
		if _, err := tree.Take(step.leaf, secrettree.Application, step.gen); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tree.Next(3, secrettree.Handshake); err != nil {
		t.Fatal(err)
	}
	enc := encodeState(t, tree)
	restored, err := secrettree.RestoreState(suite, codec.NewReader(bytes.Clone(enc)), 5, secrettree.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeState(t, restored), enc) {
		t.Fatal("restored tree encodes differently")
	}
	for _, step := range []struct {
		leaf uint32
		gen  uint32
	}{{2, 4}, {0, 1}, {1, 5}, {3, 0}} {
		a, errA := tree.Take(step.leaf, secrettree.Application, step.gen)
		b, errB := restored.Take(step.leaf, secrettree.Application, step.gen)
		if errA != nil || errB != nil || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Nonce, b.Nonce) {
			t.Fatalf("leaf %d generation %d: original %v, restored %v, keys equal %v", step.leaf, step.gen, errA, errB, bytes.Equal(a.Key, b.Key))
		}
	}
	for _, bad := range [][]byte{nil, enc[:len(enc)-1], append(bytes.Clone(enc), 0)} {
		r := codec.NewReader(bad)
		if rt, err := secrettree.RestoreState(suite, r, 5, secrettree.Config{}); err == nil {
			if err := r.Finish(); err == nil {
				t.Fatalf("malformed state %x restored as %v", bad, rt)
			}
		} else if !errors.Is(err, secrettree.ErrState) {
			t.Fatalf("malformed state: %v, want ErrState", err)
		}
	}
}

// FuzzRestoreState feeds arbitrary bytes to RestoreState: no panic, and an
// accepted input encodes back to exactly itself.
func FuzzRestoreState(f *testing.F) {
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		f.Fatal(err)
	}
	tree, err := secrettree.New(suite, bytes.Repeat([]byte{7}, suite.Nh()), 4, secrettree.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeState(f, tree))
	if _, err := tree.Take(1, secrettree.Application, 4); err != nil {
		f.Fatal(err)
	}
	f.Add(encodeState(f, tree))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := codec.NewReader(in)
		rt, err := secrettree.RestoreState(suite, r, 4, secrettree.Config{})
		if err != nil || r.Finish() != nil {
			return
		}
		if out := encodeState(t, rt); !bytes.Equal(out, in) {
			t.Fatalf("restored state encodes differently\n in %x\nout %x", in, out)
		}
	})
}

// encodeState returns the tree's serialized state, to compare before and
// after.
func encodeState(t testing.TB, tree *secrettree.Tree) []byte {
	t.Helper()
	var w codec.Writer
	tree.EncodeState(&w)
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	return w.Bytes()
}
