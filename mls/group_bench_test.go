package mls

import (
	"fmt"
	"runtime"
	"syscall"
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
// leaf and signing key; receiver is member 1, which joined from the
// Welcome, committed once itself and processed every other commit like
// any member.
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
	// The receiver commits once as well, so that every leaf, its own
	// included, comes from a commit.
	rc, err := receiver.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := receiver.MergePendingCommit(); err != nil {
		b.Fatal(err)
	}
	if _, err := god.ProcessMessage(rc.Commit); err != nil {
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

// The FullTree benchmarks measure the MLS performance goals of the design
// (issue 3) in a full tree of n members, suite 0x0001:
//
//   - CreateCommit: a member creates a Commit with an UpdatePath (not
//     merged, so every iteration starts from the same full tree);
//   - ProcessCommit: a member processes another member's Commit with an
//     UpdatePath, with every check of RFC 9420 section 12.2;
//   - AddMember: a member commits an Add of one new member with an
//     UpdatePath, producing the Commit and the Welcome (ratchet tree
//     inside); welcome-bytes is the Welcome's size;
//   - JoinFromWelcome: the new member joins from that Welcome, validating
//     the received tree in full.
//
// Committers vary across iterations so the receiver's position on their
// paths does.
func BenchmarkFullTree2(b *testing.B)    { benchFullTree(b, 2) }
func BenchmarkFullTree10(b *testing.B)   { benchFullTree(b, 10) }
func BenchmarkFullTree100(b *testing.B)  { benchFullTree(b, 100) }
func BenchmarkFullTree1000(b *testing.B) { benchFullTree(b, 1000) }
func BenchmarkFullTree5000(b *testing.B) { benchFullTree(b, 5000) }

func benchFullTree(b *testing.B, members int) {
	start := time.Now()
	god, receiver, signers := fullTree(b, members)
	b.Logf("%d members: full tree built in %v", members, time.Since(start).Round(time.Millisecond))
	tree := receiver.st.tree
	if int(tree.LeafCount()) < members {
		b.Fatalf("tree has %d leaves, want %d", tree.LeafCount(), members)
	}
	for i, x := range tree.nodes[:2*members-1] {
		switch {
		case x == nil:
			b.Fatalf("node %d is blank: tree is not full", i)
		case x.Parent != nil && len(x.Parent.UnmergedLeaves) > 0:
			b.Fatalf("node %d has unmerged leaves: tree is not full", i)
		case x.Leaf != nil && x.Leaf.Source != LeafNodeSourceCommit:
			b.Fatalf("leaf at node %d has source %d: not every member has committed", i, x.Leaf.Source)
		}
	}
	// committer returns the i-th committer: any leaf but the receiver's (1).
	committer := func(i int) int {
		if k := (i * 389) % (members - 1); k > 0 {
			return k + 1
		}
		return 0
	}
	b.Run("CreateCommit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			leaf := committer(i)
			i++
			god.st.myLeaf, god.signer = treeLeaf(leaf), signers[leaf]
			b.StartTimer()
			if _, err := god.Commit(CommitOptions{ForcePath: true}); err != nil {
				b.Fatal(err)
			}
		}
		god.DiscardPendingCommit()
	})
	b.Run("ProcessCommit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			leaf := committer(i)
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
			if _, err := receiver.ProcessMessage(out.Commit); err != nil {
				b.Fatal(err)
			}
		}
	})
	suite := god.suite
	joiner := newTestClient(b, suite, "joiner")
	kp, priv := joiner.keyPackage(b, suite)
	add := CommitOptions{Proposals: []Proposal{{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}}, ForcePath: true}
	b.Run("AddMember", func(b *testing.B) {
		god.st.myLeaf, god.signer = 0, signers[0]
		var out *CommitOutput
		for b.Loop() {
			var err error
			if out, err = god.Commit(add); err != nil {
				b.Fatal(err)
			}
		}
		god.DiscardPendingCommit()
		b.ReportMetric(float64(len(out.Welcome)), "welcome-bytes")
		b.ReportMetric(float64(len(out.Commit)), "commit-bytes")
	})
	b.Run("JoinFromWelcome", func(b *testing.B) {
		god.st.myLeaf, god.signer = 0, signers[0]
		out, err := god.Commit(add)
		if err != nil {
			b.Fatal(err)
		}
		god.DiscardPendingCommit()
		cpu := cpuTime()
		for b.Loop() {
			if _, err := JoinFromWelcome(out.Welcome, kp, priv, joiner.signer, JoinOptions{}, GroupConfig{}); err != nil {
				b.Fatal(err)
			}
		}
		// The leaf signatures are checked on every core, so the CPU time
		// of a join is more than its wall time.
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
	})
	b.Run("MemoryPerMember", func(b *testing.B) {
		god.st.myLeaf, god.signer = 0, signers[0]
		out, err := god.Commit(add)
		if err != nil {
			b.Fatal(err)
		}
		god.DiscardPendingCommit()
		var joined, received float64
		for b.Loop() {
			// A joiner's group, right after JoinFromWelcome, and the
			// receiver's, which has followed every commit since its join.
			joined = retained(b, func() any {
				g, err := JoinFromWelcome(out.Welcome, kp, priv, joiner.signer, JoinOptions{}, GroupConfig{})
				if err != nil {
					b.Fatal(err)
				}
				return g
			})
			received = retained(b, func() any {
				g, err := RestoreGroup(mustState(b, receiver), receiver.signer, GroupConfig{})
				if err != nil {
					b.Fatal(err)
				}
				return g
			})
		}
		b.ReportMetric(joined/float64(members), "joiner-B/member")
		b.ReportMetric(received/float64(members), "restored-B/member")
	})
	if members < 100 {
		return
	}
	b.Run("ProcessPrivateCommitAddRemove", func(b *testing.B) {
		// The worst case of the design: a PrivateMessage commit with one
		// Add and one Remove from a committer whose direct path meets the
		// receiver's (leaf 1, in the left half) only at the root. The
		// committer and the removed member are in the right half; the new
		// member takes the removed one's leaf.
		half := int(receiver.st.tree.LeafCount()) / 2
		right := members - half
		i := 0
		for b.Loop() {
			b.StopTimer()
			c := half + (i*97)%right
			r := half + (i*97+right/2)%right
			i++
			newcomer := newTestClient(b, suite, fmt.Sprintf("newcomer-%d", i))
			nkp, _ := newcomer.keyPackage(b, suite)
			god.st.myLeaf, god.signer = treeLeaf(c), signers[c]
			out, err := god.Commit(CommitOptions{WireFormat: WireFormatPrivateMessage, Proposals: []Proposal{
				{Type: ProposalRemove, Remove: &Remove{Removed: uint32(r)}}, {Type: ProposalAdd, Add: &Add{KeyPackage: *nkp}},
			}})
			if err != nil {
				b.Fatal(err)
			}
			if err := god.MergePendingCommit(); err != nil {
				b.Fatal(err)
			}
			signers[r] = newcomer.signer
			b.StartTimer()
			p, err := receiver.ProcessMessage(out.Commit)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if len(p.Proposals) != 2 || treemath.CommonAncestor(treeLeaf(c).NodeIndex(), 2) != receiver.st.tree.Root() {
				b.Fatalf("not the worst case: %d proposals, committer %d", len(p.Proposals), c)
			}
			b.StartTimer()
		}
	})
}

// cpuTime returns the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// retained returns how many heap bytes the value built by make keeps
// alive, measured on a settled heap before and after.
func retained(b *testing.B, make func() any) float64 {
	b.Helper()
	var before, after runtime.MemStats
	settle()
	runtime.ReadMemStats(&before)
	v := make()
	settle()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc)
}

// settle collects garbage until the heap is stable: cleanups queued by one
// collection (crypto caches keyed by weak pointers) free memory only in a
// later one, which would otherwise count against the measured value.
func settle() {
	for range 4 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
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
