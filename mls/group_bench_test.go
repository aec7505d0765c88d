package mls

import (
	"fmt"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// fullTree builds a group of n members whose tree is full in the sense of
// the design's benchmarks: every member has committed once with an
// UpdatePath, so no parent node is blank (apart from those over the
// unused leaf slots when n is not a power of two) and none has unmerged
// leaves. One Group ("god") plays every committer in turn by taking its
// leaf and signing key; receiver is member 1, which processed every
// commit like any member.
func fullTree(b *testing.B, n int) (god, receiver *Group, signers []*cipher.SignatureKey) {
	b.Helper()
	suite := mustSuite(b, X25519AES128GCMSHA256Ed25519)
	clients := make([]*testClient, n)
	for i := range clients {
		clients[i] = newTestClient(b, suite, fmt.Sprintf("member-%d", i))
		signers = append(signers, clients[i].signer)
	}
	var err error
	god, err = CreateGroup(X25519AES128GCMSHA256Ed25519, []byte("bench"), clients[0].signer, clients[0].leaf(), nil, GroupConfig{RatchetTreeInWelcome: true})
	if err != nil {
		b.Fatal(err)
	}
	var adds []Proposal
	var kp1 *KeyPackage
	var priv1 *KeyPackagePrivate
	for i := 1; i < n; i++ {
		kp, priv := clients[i].keyPackage(b, suite)
		if i == 1 {
			kp1, priv1 = kp, priv
		}
		adds = append(adds, Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}})
	}
	out, err := god.Commit(CommitOptions{Proposals: adds, ForcePath: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := god.MergePendingCommit(); err != nil {
		b.Fatal(err)
	}
	if receiver, err = JoinFromWelcome(out.Welcome, kp1, priv1, clients[1].signer, JoinOptions{}, GroupConfig{}); err != nil {
		b.Fatal(err)
	}
	// Commit in bit-reversed leaf order, which fills the tree top-down:
	// each commit then finds most of its copath already non-blank and
	// encrypts to few nodes, keeping the setup short.
	width := 1
	for width < n {
		width *= 2
	}
	for i := range width {
		leaf := bitReverse(i, width)
		if leaf >= 2 && leaf < n {
			commitAs(b, god, leaf, signers[leaf], receiver)
		}
	}
	return god, receiver, signers
}

// commitAs has god commit with an UpdatePath as the member at leaf,
// merges it, and has receiver process it.
func commitAs(b *testing.B, god *Group, leaf int, signer *cipher.SignatureKey, receiver *Group) []byte {
	b.Helper()
	god.st.myLeaf, god.signer = treeLeaf(leaf), signer
	out, err := god.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := god.MergePendingCommit(); err != nil {
		b.Fatal(err)
	}
	if receiver != nil {
		if _, err := receiver.ProcessMessage(out.Commit); err != nil {
			b.Fatal(err)
		}
	}
	return out.Commit
}

// BenchmarkFullTree1000 measures, in a full tree of 1,000 members, a
// member processing a commit with an UpdatePath (all section 12.2 checks)
// and a new member joining from a Welcome with full tree validation.
func BenchmarkFullTree1000(b *testing.B) {
	const members = 1000
	god, receiver, signers := fullTree(b, members)
	for _, x := range receiver.st.tree.nodes[:2*members-1] {
		if x == nil || (x.Parent != nil && len(x.Parent.UnmergedLeaves) > 0) {
			b.Fatal("tree is not full")
		}
	}
	b.Run("ProcessCommit", func(b *testing.B) {
		var elapsed time.Duration
		i := 0
		for b.Loop() {
			b.StopTimer()
			// Committers vary so the receiver's position on their paths does.
			leaf := 2 + (i*389)%(members-2)
			i++
			god.st.myLeaf, god.signer = treeLeaf(leaf), signers[leaf]
			out, err := god.Commit(CommitOptions{ForcePath: true})
			if err != nil {
				b.Fatal(err)
			}
			if err := god.MergePendingCommit(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if _, err := receiver.ProcessMessage(out.Commit); err != nil {
				b.Fatal(err)
			}
			elapsed += time.Since(start)
		}
		b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "process-ns/op")
	})
	b.Run("JoinFromWelcome", func(b *testing.B) {
		suite := god.suite
		joiner := newTestClient(b, suite, "joiner")
		kp, priv := joiner.keyPackage(b, suite)
		god.st.myLeaf, god.signer = 0, signers[0]
		out, err := god.Commit(CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}, ForcePath: true})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := JoinFromWelcome(out.Welcome, kp, priv, joiner.signer, JoinOptions{}, GroupConfig{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func treeLeaf(i int) treemath.LeafIndex { return treemath.LeafIndex(i) }

// bitReverse reverses the low log2(width) bits of i.
func bitReverse(i, width int) int {
	r := 0
	for w := width; w > 1; w /= 2 {
		r = r<<1 | i&1
		i >>= 1
	}
	return r
}
