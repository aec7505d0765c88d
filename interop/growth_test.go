package interop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/mls"
)

// growthSeed fixes TestInteropGrowth's choices (ops, committers, targets,
// kinds), so a failure replays exactly.
const growthSeed = 11

// TestInteropGrowth grows one group to 50 members over 100 epochs of
// random (seeded) adds, removes and updates, with members of all four
// implementations, each in its own process (Burrow as cmd/burrowpeer)
// except the creator, a Burrow engine in this process that is never
// removed. Every epoch one random member commits; every member processes
// the commit, joiners join, and all members compare the epoch, the member
// list, the epoch authenticator and a 32-byte exporter value; the committer
// also sends an application message everyone reads. At the end every member
// reads every other member's message.
//
// Two ts-mls bugs shape the choices, as the peer tests pin them: a ts-mls
// member never commits a lone Remove (2.0.0-rc.10 sends it without
// UpdatePath, TestTSMLS2PathlessRemoveCommit), and a ts-mls member joins
// only in a commit without UpdatePath (the creator's or a ts-mls member's)
// adding one member to a tree without unmerged leaves: both versions refuse
// a valid tree in which a non-blank node on an unmerged leaf's direct path
// lists other unmerged leaves (TestTSMLSUnmergedLeavesQuirk). Updates are committed by a
// member whose leaf is unmerged when there is one, which keeps such trees
// coming back. The creator's leaf 0 stays occupied, so the root never drops
// out of a committer's filtered direct path (TestTSMLSBlankRootCommitSecret).
func TestInteropGrowth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const target, epochs = 50, 100
	cfg := burrowPeerConfig(ctx, t, testConfig(ctx, t))
	g := &testGroup{t: t, ctx: ctx, cfg: cfg}
	rng := rand.New(rand.NewPCG(growthSeed, growthSeed))
	creator := g.newMember("m0", KindBurrow)
	g.create(creator)
	observer := creator.p.(*Engine)
	kinds := []string{KindBurrowPeer, KindTSMLS, KindTSMLS2, KindMLSGo}
	joined := map[string]int{}
	next := 1
	for epoch := 1; epoch <= epochs; epoch++ {
		size, left := len(g.members), epochs-epoch // epochs after this one
		need := target - size
		unmerged := unmergedLeaves(observer.Group().Tree())
		op := "update"
		switch r := rng.IntN(10); {
		case need > 3*left:
			op = "add" // must catch up
		case need > 0 && r < 6:
			op = "add"
		case size > 2 && r < 8 && need+1 <= 3*left:
			op = "remove"
		}
		if size == 1 {
			op = "add"
		}
		var committer *member
		pick := func(ok func(*member) bool) *member {
			var c []*member
			for _, m := range g.members {
				if ok(m) {
					c = append(c, m)
				}
			}
			return c[rng.IntN(len(c))]
		}
		switch op {
		case "add":
			n := min(need, 1+rng.IntN(3))
			if need > 3*left {
				n = min(need, 3)
			}
			var joiners []*member
			var kps []Hex
			tsmlsJoiner := false
			for range n {
				kind := kinds[rng.IntN(len(kinds))]
				if isTSMLS(kind) && (n > 1 || len(unmerged) > 0) {
					kind = []string{KindBurrowPeer, KindMLSGo}[rng.IntN(2)]
				}
				tsmlsJoiner = tsmlsJoiner || isTSMLS(kind)
				j := g.newMember(fmt.Sprintf("m%d", next), kind)
				next++
				joined[kind]++
				joiners = append(joiners, j)
				kps = append(kps, g.keyPackage(j))
			}
			// A ts-mls joiner needs the add without UpdatePath: the new leaf
			// is then listed alike by every non-blank node above it.
			committer = pick(func(m *member) bool { return !tsmlsJoiner || m == creator || isTSMLS(m.p.Kind()) })
			t.Logf("epoch %d: %s (%s) adds %d", epoch, committer.name, committer.p.Kind(), n)
			c := g.commitWith(committer, CommitArgs{Add: kps}, joiners...)
			g.sendAll(committer, c.Epoch)
		case "remove":
			committer = pick(func(m *member) bool { return !isTSMLS(m.p.Kind()) })
			target := pick(func(m *member) bool { return m != committer && m != creator })
			t.Logf("epoch %d: %s (%s) removes %s (%s)", epoch, committer.name, committer.p.Kind(), target.name, target.p.Kind())
			leaf := g.leafOf(committer, target)
			g.members = slices.DeleteFunc(g.members, func(m *member) bool { return m == target })
			c := g.commitWith(committer, CommitArgs{Remove: []uint32{leaf}})
			g.sendAll(committer, c.Epoch)
		default:
			committer = pick(func(m *member) bool { return len(unmerged) == 0 || unmerged[g.leafOf(creator, m)] })
			t.Logf("epoch %d: %s (%s) updates", epoch, committer.name, committer.p.Kind())
			var c CommitResult
			g.call(committer, "commit_update", nil, &c)
			g.broadcast(committer, c.Commit, "commit", c.Epoch, nil)
			g.sendAll(committer, c.Epoch)
		}
		if got := g.agree(); got != uint64(epoch) {
			t.Fatalf("after commit %d the group is at epoch %d", epoch, got)
		}
	}
	if len(g.members) != target {
		t.Fatalf("the group ends with %d members, want %d", len(g.members), target)
	}
	count := map[string]int{}
	for _, m := range g.members {
		count[m.p.Kind()]++
	}
	for _, kind := range append(kinds, KindBurrow) {
		if count[kind] == 0 {
			t.Fatalf("no %s member at the end (members by kind %v, joined %v)", kind, count, joined)
		}
	}
	t.Logf("members by kind at epoch %d: %v (joined over the run: %v)", epochs, count, joined)
	g.converge()
}

// sendAll has sender protect one application message that every other
// member must read.
func (g *testGroup) sendAll(sender *member, epoch uint64) {
	g.t.Helper()
	plain := fmt.Appendf(nil, "epoch %d from %s", epoch, sender.name)
	var pr ProtectResult
	g.call(sender, "protect", ProtectArgs{Plaintext: plain}, &pr)
	g.broadcast(sender, pr.Message, "application", epoch, plain)
}

// unmergedLeaves is the set of leaves listed in some parent's
// unmerged_leaves.
func unmergedLeaves(rt mls.RatchetTree) map[uint32]bool {
	out := map[uint32]bool{}
	for _, n := range rt {
		if n != nil && n.Parent != nil {
			for _, l := range n.Parent.UnmergedLeaves {
				out[l] = true
			}
		}
	}
	return out
}
