package secrettree_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/secrettree"
)

type hexb = vectortest.Hex

type secretTreeVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	SenderData  struct {
		SenderDataSecret hexb `json:"sender_data_secret"`
		Ciphertext       hexb `json:"ciphertext"`
		Key              hexb `json:"key"`
		Nonce            hexb `json:"nonce"`
	} `json:"sender_data"`
	EncryptionSecret hexb `json:"encryption_secret"`
	Leaves           [][]struct {
		Generation       vectortest.Uint `json:"generation"`
		HandshakeKey     hexb            `json:"handshake_key"`
		HandshakeNonce   hexb            `json:"handshake_nonce"`
		ApplicationKey   hexb            `json:"application_key"`
		ApplicationNonce hexb            `json:"application_nonce"`
	} `json:"leaves"`
}

func TestSecretTreeVectors(t *testing.T) {
	const file, genKey = "secret-tree.json", "secret-tree.json/generations"
	var cases []secretTreeVector
	vectortest.Load(t, file, &cases)
	counter := vectortest.NewSuiteCounter()
	for i, tc := range cases {
		suite, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
		if err != nil {
			if !errors.Is(err, cipher.ErrUnsupportedCipherSuite) || cipher.CipherSuite(tc.CipherSuite).Supported() {
				t.Fatalf("case %d: %v", i, err)
			}
			counter.Unsupported(file, tc.CipherSuite)
			for _, leaf := range tc.Leaves {
				for range leaf {
					counter.Unsupported(genKey, tc.CipherSuite)
				}
			}
			continue
		}
		t.Run(suite.ID().String(), func(t *testing.T) {
			sd := tc.SenderData
			key, nonce, err := secrettree.SenderDataKeyNonce(suite, sd.SenderDataSecret, sd.Ciphertext)
			if err != nil || !key.Equal(sd.Key) || !nonce.Equal(sd.Nonce) {
				t.Errorf("case %d: sender data key/nonce mismatch (err %v)", i, err)
			}
			tree, err := secrettree.New(suite, tc.EncryptionSecret, uint32(len(tc.Leaves)), secrettree.Config{})
			if err != nil {
				t.Fatalf("case %d: New: %v", i, err)
			}
			allOK := !t.Failed()
			for leaf, gens := range tc.Leaves {
				for _, g := range gens {
					hs, err := tree.Take(uint32(leaf), secrettree.Handshake, uint32(g.Generation))
					if err != nil {
						t.Fatalf("case %d leaf %d gen %d handshake: %v", i, leaf, g.Generation, err)
					}
					app, err := tree.Take(uint32(leaf), secrettree.Application, uint32(g.Generation))
					if err != nil {
						t.Fatalf("case %d leaf %d gen %d application: %v", i, leaf, g.Generation, err)
					}
					ok := hs.Key.Equal(g.HandshakeKey) && hs.Nonce.Equal(g.HandshakeNonce) &&
						app.Key.Equal(g.ApplicationKey) && app.Nonce.Equal(g.ApplicationNonce)
					if !ok {
						t.Errorf("case %d leaf %d gen %d: key or nonce mismatch", i, leaf, g.Generation)
						allOK = false
						continue
					}
					counter.Ran(genKey, tc.CipherSuite)
				}
			}
			if allOK {
				counter.Ran(file, tc.CipherSuite)
			}
		})
	}
	counter.Check(t, "counts_crypto.json", file, genKey)
}

func newTree(t *testing.T, leaves uint32, cfg secrettree.Config) (*cipher.Suite, *secrettree.Tree) {
	t.Helper()
	suite, err := cipher.New(cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := secrettree.New(suite, bytes.Repeat([]byte{7}, suite.Nh()), leaves, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return suite, tree
}

// TestConsumedGenerationsAreGone checks the deletion schedule of RFC 9420
// section 9.2: once a generation is taken it can be neither derived nor used
// again, and skipped keys outside the window are gone.
func TestConsumedGenerationsAreGone(t *testing.T) {
	type step struct {
		gen     uint32
		wantErr error
	}
	tests := []struct {
		name  string
		cfg   secrettree.Config
		steps []step
	}{
		{"same generation twice", secrettree.Config{}, []step{{5, nil}, {5, secrettree.ErrGenerationConsumed}}},
		{"late message inside window, once", secrettree.Config{OutOfOrderWindow: 4}, []step{{10, nil}, {7, nil}, {7, secrettree.ErrGenerationConsumed}, {6, nil}}},
		{"late message outside window", secrettree.Config{OutOfOrderWindow: 4}, []step{{10, nil}, {5, secrettree.ErrGenerationConsumed}}},
		{"window pruned as ratchet moves", secrettree.Config{OutOfOrderWindow: 4}, []step{{10, nil}, {20, nil}, {9, secrettree.ErrGenerationConsumed}, {16, nil}}},
		{"strict in-order", secrettree.Config{OutOfOrderWindow: -1}, []step{{3, nil}, {2, secrettree.ErrGenerationConsumed}, {4, nil}}},
		{"jump too far", secrettree.Config{MaxForward: 100}, []step{{101, secrettree.ErrTooFarAhead}, {100, nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, tree := newTree(t, 4, tc.cfg)
			for _, st := range tc.steps {
				kn, err := tree.Take(2, secrettree.Application, st.gen)
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("Take(gen %d) error = %v, want %v", st.gen, err, st.wantErr)
				}
				if err == nil && (kn.Generation != st.gen || len(kn.Key) != 16 || len(kn.Nonce) != 12) {
					t.Fatalf("Take(gen %d) = generation %d, key %d bytes, nonce %d bytes", st.gen, kn.Generation, len(kn.Key), len(kn.Nonce))
				}
			}
		})
	}
}

// TestSealOpen checks that a sender's Seal opens at the receiver exactly
// once, that a failed Open does not consume the key, and that the two
// ratchets and the reuse guard are independent.
func TestSealOpen(t *testing.T) {
	_, sender := newTree(t, 8, secrettree.Config{})
	_, receiver := newTree(t, 8, secrettree.Config{})
	guard, err := secrettree.NewReuseGuard()
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("aad")
	var gens []uint32
	var cts [][]byte
	for i := range 3 {
		g, ct, err := sender.Seal(5, secrettree.Application, guard, aad, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		gens, cts = append(gens, g), append(cts, ct)
	}
	if gens[0] != 0 || gens[2] != 2 {
		t.Fatalf("generations = %v, want 0,1,2", gens)
	}
	tests := []struct {
		name    string
		typ     secrettree.RatchetType
		gen     int
		guard   [4]byte
		aad     []byte
		wantErr error
	}{
		{"wrong aad does not consume", secrettree.Application, 2, guard, []byte("x"), cipher.ErrDecrypt},
		{"wrong guard does not consume", secrettree.Application, 2, [4]byte{1, 2, 3, 4}, aad, cipher.ErrDecrypt},
		{"wrong ratchet", secrettree.Handshake, 2, guard, aad, cipher.ErrDecrypt},
		{"out of order ok", secrettree.Application, 2, guard, aad, nil},
		{"replay refused", secrettree.Application, 2, guard, aad, secrettree.ErrGenerationConsumed},
		{"earlier still open", secrettree.Application, 0, guard, aad, nil},
		{"earlier replay refused", secrettree.Application, 0, guard, aad, secrettree.ErrGenerationConsumed},
		{"middle ok", secrettree.Application, 1, guard, aad, nil},
	}
	for _, tc := range tests {
		pt, err := receiver.Open(5, tc.typ, gens[tc.gen], tc.guard, tc.aad, cts[tc.gen])
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: Open error = %v, want %v", tc.name, err, tc.wantErr)
		}
		if err == nil && !bytes.Equal(pt, []byte{byte(tc.gen)}) {
			t.Fatalf("%s: plaintext %x", tc.name, pt)
		}
	}
}

func TestTreeErrors(t *testing.T) {
	_, tree := newTree(t, 3, secrettree.Config{})
	if _, err := tree.Take(3, secrettree.Handshake, 0); !errors.Is(err, secrettree.ErrLeafOutOfRange) {
		t.Errorf("leaf 3 of 3: %v, want ErrLeafOutOfRange", err)
	}
	if _, err := tree.Take(0, secrettree.RatchetType(9), 0); !errors.Is(err, secrettree.ErrInvalidType) {
		t.Errorf("bad type: %v, want ErrInvalidType", err)
	}
	if _, err := tree.Next(2, secrettree.Handshake); err != nil {
		t.Errorf("leaf 2 of 3: %v", err)
	}
	tree.Drop()
	if _, err := tree.Next(1, secrettree.Handshake); !errors.Is(err, secrettree.ErrDropped) {
		t.Errorf("after Drop: %v, want ErrDropped", err)
	}
}

func TestReuseGuard(t *testing.T) {
	nonce := []byte{0xff, 0x00, 0xaa, 0x55, 9, 9}
	got := secrettree.ApplyReuseGuard(nonce, [4]byte{0x0f, 0xf0, 0xaa, 0x55})
	if want := []byte{0xf0, 0xf0, 0x00, 0x00, 9, 9}; !bytes.Equal(got, want) {
		t.Fatalf("ApplyReuseGuard = %x, want %x", []byte(got), want)
	}
	if nonce[0] != 0xff {
		t.Fatal("ApplyReuseGuard modified its input")
	}
}

// TestSenderSideMatchesVectors derives each leaf's generation-0 keys with
// Next (the sending side) and compares them with the vectors.
func TestSenderSideMatchesVectors(t *testing.T) {
	var cases []secretTreeVector
	vectortest.Load(t, "secret-tree.json", &cases)
	checked := 0
	for i, tc := range cases {
		suite, err := cipher.New(cipher.CipherSuite(tc.CipherSuite))
		if err != nil {
			continue // counted by TestSecretTreeVectors
		}
		tree, err := secrettree.New(suite, tc.EncryptionSecret, uint32(len(tc.Leaves)), secrettree.Config{})
		if err != nil {
			t.Fatal(err)
		}
		for leaf, gens := range tc.Leaves {
			if gens[0].Generation != 0 {
				t.Fatalf("case %d leaf %d: first generation is %d, want 0", i, leaf, gens[0].Generation)
			}
			kn, err := tree.Next(uint32(leaf), secrettree.Application)
			if err != nil || kn.Generation != 0 || !kn.Key.Equal(gens[0].ApplicationKey) || !kn.Nonce.Equal(gens[0].ApplicationNonce) {
				t.Errorf("case %d leaf %d: Next mismatch (%v)", i, leaf, err)
			}
			checked++
		}
	}
	if checked != 3*(1+8+32) {
		t.Errorf("checked %d leaves, want %d", checked, 3*(1+8+32))
	}
}

// TestNonPowerOfTwoLeafCount checks that a tree for 3 leaves gives the same
// keys as the 4-leaf tree it is embedded in (the ratchet tree is always
// full, RFC 9420 section 7.8).
func TestNonPowerOfTwoLeafCount(t *testing.T) {
	_, t3 := newTree(t, 3, secrettree.Config{})
	_, t4 := newTree(t, 4, secrettree.Config{})
	for leaf := uint32(0); leaf < 3; leaf++ {
		a, err := t3.Take(leaf, secrettree.Handshake, 2)
		if err != nil {
			t.Fatal(err)
		}
		b, err := t4.Take(leaf, secrettree.Handshake, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Key.Equal(b.Key) || !a.Nonce.Equal(b.Nonce) {
			t.Errorf("leaf %d: 3-leaf and 4-leaf trees differ", leaf)
		}
	}
}

func TestTreeAndKeysPrintRedacted(t *testing.T) {
	_, tree := newTree(t, 2, secrettree.Config{})
	kn, err := tree.Next(1, secrettree.Application)
	if err != nil {
		t.Fatal(err)
	}
	keyHex := fmt.Sprintf("%x", []byte(kn.Key))
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		for _, v := range []any{tree, *tree, kn, &kn} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, keyHex) || strings.Contains(out, string(kn.Key)) || !strings.Contains(out, "redacted") {
				t.Errorf("%s of %T: %s", verb, v, out)
			}
		}
	}
	// The tree must not print its (unconsumed) leaf-0 path secrets either;
	// its only output is the fixed placeholder.
	if got := fmt.Sprintf("%#v", *tree); got != "secrettree.Tree(2 leaves, redacted)" {
		t.Errorf("%%#v of Tree = %q", got)
	}
}
