package mls_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// seedCases loads messages.json once per fuzz target; the targets below
// seed themselves from it so fuzzing starts from real structures.
func seedCases(f *testing.F) []messagesCase {
	f.Helper()
	var cases []messagesCase
	vectortest.Load(f, "messages.json", &cases)
	return cases
}

// mlsMessageBody strips the 4-byte MLSMessage header (version, wire format).
func mlsMessageBody(b []byte) []byte {
	if len(b) < 4 {
		return nil
	}
	return b[4:]
}

// fuzzStable checks the decoder's contract on arbitrary input: no panic,
// and any accepted input re-encodes to exactly the same bytes (decoding is
// strict, so there is one encoding per value) and decodes again.
func fuzzStable(t *testing.T, in []byte, fresh func() interface {
	mls.Encoder
	mls.Decoder
}) {
	v := fresh()
	if err := mls.Unmarshal(in, v); err != nil {
		return
	}
	out, err := mls.Marshal(v)
	if err != nil {
		t.Fatalf("decoded value does not encode: %v", err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("re-encoding differs\n in %x\nout %x", in, out)
	}
	if err := mls.Unmarshal(out, fresh()); err != nil {
		t.Fatalf("re-encoded value does not decode: %v", err)
	}
}

func FuzzDecodeKeyPackage(f *testing.F) {
	for _, c := range seedCases(f) {
		f.Add(mlsMessageBody(c.MLSKeyPackage))
		f.Add([]byte(c.AddProposal))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if kp, err := mls.DecodeKeyPackage(in); err == nil {
			if b, err := kp.Bytes(); err != nil || !bytes.Equal(b, in) {
				t.Fatalf("Bytes is not the input (%v)", err)
			}
		}
		fuzzStable(t, in, wrap[mls.KeyPackage]())
	})
}

func FuzzDecodeMLSMessage(f *testing.F) {
	for _, c := range seedCases(f) {
		for _, b := range [][]byte{c.MLSWelcome, c.MLSGroupInfo, c.MLSKeyPackage, c.PublicMessageApplication,
			c.PublicMessageProposal, c.PublicMessageCommit, c.PrivateMessage} {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := mls.DecodeMLSMessage(in); err != nil {
			return
		}
		fuzzStable(t, in, wrap[mls.MLSMessage]())
	})
}

func FuzzDecodeWelcome(f *testing.F) {
	for _, c := range seedCases(f) {
		f.Add(mlsMessageBody(c.MLSWelcome))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := mls.DecodeWelcome(in); err != nil {
			return
		}
		fuzzStable(t, in, wrap[mls.Welcome]())
	})
}

func FuzzDecodeGroupInfo(f *testing.F) {
	for _, c := range seedCases(f) {
		f.Add(mlsMessageBody(c.MLSGroupInfo))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		gi, err := mls.DecodeGroupInfo(in)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(in, gi.TBS()) {
			t.Fatal("TBS is not a prefix of the input")
		}
		// Extensions are decoded lazily; their accessors must not panic.
		_, _, _ = gi.Extensions.RatchetTree()
		_, _, _ = gi.Extensions.ExternalPub()
		fuzzStable(t, in, wrap[mls.GroupInfo]())
	})
}

func FuzzDecodeRatchetTree(f *testing.F) {
	for _, c := range seedCases(f) {
		f.Add([]byte(c.RatchetTree))
	}
	var trees []struct {
		Tree vectortest.Hex `json:"tree"`
	}
	vectortest.Load(f, "tree-validation.json", &trees)
	for _, tc := range trees {
		f.Add([]byte(tc.Tree))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		rt, err := mls.DecodeRatchetTree(in)
		if err != nil {
			return
		}
		exerciseTree(t, rt)
		fuzzStable(t, in, func() interface {
			mls.Encoder
			mls.Decoder
		} {
			return new(mls.RatchetTree)
		})
	})
}

func FuzzDecodeCommit(f *testing.F) {
	for _, c := range seedCases(f) {
		f.Add([]byte(c.Commit))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := mls.DecodeCommit(in); err != nil {
			return
		}
		fuzzStable(t, in, wrap[mls.Commit]())
	})
}

// exerciseTree runs every tree check and operation on a decoded tree: none
// may panic, and the checks must give the same answer twice.
func exerciseTree(t *testing.T, rt mls.RatchetTree) {
	tree, err := mls.NewTree(rt)
	if err != nil {
		return
	}
	h := hashOnly(func(b []byte) []byte { s := sha256.Sum256(b); return s[:] })
	for x := treemath.NodeIndex(0); uint32(x) < tree.Width(); x++ {
		tree.Resolution(x)
	}
	err1 := tree.VerifyParentHashes(h)
	if err2 := tree.VerifyParentHashes(h); (err1 == nil) != (err2 == nil) {
		t.Fatal("parent hash check is not deterministic")
	}
	_ = tree.VerifyUnmergedLeaves()
	if _, err := tree.TreeHash(h); err != nil {
		return
	}
	l := tree.AddLeaf(&mls.LeafNode{Source: mls.LeafNodeSourceKeyPackage})
	if err := tree.RemoveLeaf(l); err != nil {
		t.Fatalf("removing the leaf just added: %v", err)
	}
	if _, err := tree.TreeHash(h); err != nil {
		t.Fatal(err)
	}
}
