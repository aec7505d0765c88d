package interop

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// TestEngineInterop pairs Burrow's engine with each independent peer, in
// both directions: whoever creates the group adds the other side's
// KeyPackage, then the two sides take turns committing updates, adds (of
// a third and a fourth member, one of each implementation) and removes (of
// one member of each implementation), ten commits in all. After every
// epoch all members must agree on the epoch, the member list, the epoch
// authenticator and a 32-byte exporter value, and read each other's
// application messages.
//
// Each pairing runs with two engine configurations: commits framed as
// PublicMessage with add-only commits carrying no UpdatePath (the peer
// joins a tree with unmerged leaves and no path secret), and commits framed
// as PrivateMessage with an UpdatePath on every commit (the peer's Welcome
// carries a path secret). ts-mls sends PrivateMessage and mls-go
// PublicMessage, so every wire format is parsed by every side.
func TestEngineInterop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := testConfig(ctx, t)
	engines := []struct {
		name string
		cfg  EngineConfig
	}{
		{"public", EngineConfig{HandshakeWireFormat: mls.WireFormatPublicMessage}},
		{"private_path", EngineConfig{HandshakeWireFormat: mls.WireFormatPrivateMessage, AddWithPath: true}},
	}
	type pairing struct {
		name string
		kind string
		ec   EngineConfig
	}
	var peers []pairing
	for _, kind := range []string{KindTSMLS, KindMLSGo} {
		for _, ec := range engines {
			peers = append(peers, pairing{kind + "/" + ec.name, kind, ec.cfg})
		}
	}
	for _, pc := range peers {
		for _, weCreate := range []bool{true, false} {
			name := pc.name + "/peer_creates"
			ours, theirs := KindBurrow, pc.kind // kinds of alice's side and bob's side
			if weCreate {
				name = pc.name + "/burrow_creates"
			} else {
				ours, theirs = pc.kind, KindBurrow
			}
			t.Run(name, func(t *testing.T) {
				g := &testGroup{t: t, ctx: ctx, cfg: cfg, engine: pc.ec}
				// alice and carol are one implementation, bob and dave the other.
				alice := g.newMember("alice", ours)
				bob := g.newMember("bob", theirs)
				carol := g.newMember("carol", ours)
				dave := g.newMember("dave", theirs)
				g.create(alice)
				g.converge()
				steps := []step{
					{"alice adds bob's KeyPackage; bob joins from alice's Welcome", alice, bob, "add"},
					{"bob updates", bob, nil, "update"},
					{"alice updates", alice, nil, "update"},
					{"bob adds carol (alice's implementation)", bob, carol, "add"},
					{"alice adds dave (bob's implementation) to three members", alice, dave, "add"},
					{"dave updates in a four-member tree", dave, nil, "update"},
					{"carol removes bob", carol, bob, "remove"},
					// Not "dave removes alice": with leaves 0 and 1 both blank
					// the root drops out of dave's filtered direct path, where
					// ts-mls 1.6.4 derives a wrong commit_secret; see
					// TestTSMLSBlankRootCommitSecret.
					{"dave removes carol", dave, carol, "remove"},
					{"alice updates after removals", alice, nil, "update"},
					{"dave updates after removals", dave, nil, "update"},
				}
				g.play(steps)
				if len(g.members) != 2 || g.members[0] != alice || g.members[1] != dave {
					t.Fatalf("final members %d, want alice and dave", len(g.members))
				}
			})
		}
	}
}

// unmergedAt lists, for each parent node whose unmerged_leaves names leaf,
// that node and its list.
func unmergedAt(rt mls.RatchetTree, leaf uint32) map[treemath.NodeIndex][]uint32 {
	out := map[treemath.NodeIndex][]uint32{}
	for x, n := range rt {
		if n != nil && n.Parent != nil && slices.Contains(n.Parent.UnmergedLeaves, leaf) {
			out[treemath.NodeIndex(x)] = slices.Clone(n.Parent.UnmergedLeaves)
		}
	}
	return out
}

// checkQuirkTree asserts the tree shape that ts-mls 1.6.4 refuses: leaf 3
// listed as {3} at node 3 and together with leaf 5 at node 7.
func checkQuirkTree(t *testing.T, who string, rt mls.RatchetTree) {
	t.Helper()
	got := unmergedAt(rt, 3)
	if !slices.Equal(got[3], []uint32{3}) || !slices.Contains(got[7], 5) || len(got[7]) < 2 {
		t.Fatalf("%s's tree lists leaf 3 as unmerged at %v; want {3} at node 3 and a longer list with leaf 5 at node 7", who, got)
	}
}

// TestEngineUnmergedLeavesQuirk covers the ts-mls 1.6.4 quirk with
// Burrow's engine on both ends.
//
// The tree: eight leaves where leaf 3 sits in the unmerged_leaves of node 3
// as {3} and of node 7 as {3, 5, ...}. Path-less Adds produce it: RFC 9420
// section 7.7 adds a new leaf to the unmerged_leaves of every non-blank
// parent above it, and a parent refilled by a later UpdatePath starts again
// from an empty list while ancestors it did not touch keep theirs. The
// joiner's check of section 12.4.3.1 asks, for each entry of a parent's
// unmerged_leaves, that every non-blank node between that leaf and the
// parent also has an entry for the leaf: membership, not equal lists. The
// parent hashes of section 7.9 are likewise computed per node, each with
// its own unmerged leaves taken out. The tree is valid, so ts-mls 1.6.4 is
// the side that is wrong when its joinGroup refuses it ("must list leaf
// node in its unmerged_leaves"); mls-go and Burrow accept it.
//
// Two constructions:
//   - burrow_builds: our engine commits the path-less Adds; an mls-go member
//     and a second Burrow engine join the quirk tree and agree with the
//     mls-go members; a ts-mls joiner is refused, and the group carries on
//     after removing its dead leaf.
//   - tsmls_builds: ts-mls commits the Adds (it sends no path for add-only
//     commits); our engine joins the tree ts-mls itself produced, checks its
//     shape, and agrees with ts-mls and mls-go.
func TestEngineUnmergedLeavesQuirk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := testConfig(ctx, t)

	// build makes alice (builder) add four mls-go members, remove dave at
	// leaf 3 (her path refills nodes 1, 3 and 7 with empty lists), and add
	// fred at leaf 3 (node 5 blank, nodes 3 and 7 list {3}).
	build := func(g *testGroup, builder string) *member {
		alice := g.newMember("alice", builder)
		g.create(alice)
		var dave *member
		for _, name := range []string{"bob", "carol", "dave", "erin"} {
			m := g.newMember(name, KindMLSGo)
			g.mustAdd(alice, m)
			if name == "dave" {
				dave = m
			}
		}
		if leaf := g.leafOf(alice, dave); leaf != 3 {
			t.Fatalf("dave at leaf %d, want 3", leaf)
		}
		g.remove(alice, dave)
		fred := g.newMember("fred", KindMLSGo)
		g.mustAdd(alice, fred)
		if leaf := g.leafOf(alice, fred); leaf != 3 {
			t.Fatalf("fred at leaf %d, want 3", leaf)
		}
		g.converge()
		return alice
	}

	t.Run("burrow_builds", func(t *testing.T) {
		g := &testGroup{t: t, ctx: ctx, cfg: cfg}
		alice := build(g, KindBurrow)
		// gina lands on leaf 5: node 7 now lists {3, 5}, node 3 still {3}.
		gina := g.newMember("gina", KindBurrow)
		g.mustAdd(alice, gina)
		checkQuirkTree(t, "alice (burrow)", alice.p.(*Engine).Group().Tree())
		checkQuirkTree(t, "gina (burrow)", gina.p.(*Engine).Group().Tree())
		g.converge()
		// hank (mls-go) on leaf 6 faces the same mismatch for leaf 3.
		hank := g.newMember("hank", KindMLSGo)
		g.mustAdd(alice, hank)
		checkQuirkTree(t, "alice (burrow)", alice.p.(*Engine).Group().Tree())
		g.converge()
		// ivy (ts-mls) on leaf 7 is refused by ts-mls's own check.
		ivy := g.newMember("ivy", KindTSMLS)
		err := g.add(alice, ivy)
		var ce *CallError
		switch {
		case err == nil:
			t.Fatalf("ts-mls 1.6.4 accepted the Welcome; its unmerged_leaves quirk seems gone: update DESIGN.md, interop/README.md and this test")
		case !errors.As(err, &ce):
			t.Fatalf("ts-mls join failed other than by an MLS refusal: %v", err)
		case !strings.Contains(ce.Message, "unmerged_leaves"):
			// ts-mls's text is the only signal a foreign process gives; a
			// different refusal would be a new interop failure, not the quirk.
			t.Fatalf("ts-mls refused our Welcome for another reason than the known quirk: %v", err)
		}
		t.Logf("ts-mls refused the valid tree, as expected: %v", err)
		// The group carries on without the leaf ivy never took up.
		g.removeLeaf(alice, 7, nil)
		g.converge()
	})

	t.Run("tsmls_builds", func(t *testing.T) {
		g := &testGroup{t: t, ctx: ctx, cfg: cfg}
		alice := build(g, KindTSMLS)
		gina := g.newMember("gina", KindBurrow)
		g.mustAdd(alice, gina) // full validation of a tree ts-mls produced
		checkQuirkTree(t, "gina (burrow)", gina.p.(*Engine).Group().Tree())
		g.converge()
		g.update(gina) // our path merges the unmerged leaves ts-mls left
		g.converge()
	})
}

// TestTSMLSBlankRootCommitSecret pins an interop failure found by pairing
// our engine with ts-mls, and shows that Burrow agrees with mls-go on it.
//
// The shape: four leaves; bob (leaf 1) is removed, then dave (leaf 3)
// commits the removal of alice (leaf 0). Leaves 0 and 1 are now blank, so
// the root's child on dave's copath (node 1) has an empty resolution and
// the root is not on dave's filtered direct path (RFC 9420 section 4.1.2):
// the path has one node, node 5. Section 7.4 then gives commit_secret =
// DeriveSecret(path_secret[n], "path") with path_secret[n] the secret of
// that last filtered node. ts-mls 1.6.4 (pathSecrets.js getCommitSecret
// and pathToRoot) instead always ratchets on up to the root, blank or
// not, and derives the commit secret from the root's secret: one
// DeriveSecret("path") too many. Its commit's confirmation tag therefore
// fails at every other implementation, and it rejects theirs; ts-mls only
// agrees with itself. ts-mls is wrong; Burrow and mls-go agree with each
// other and with the RFC's treekem test vectors, which Burrow passes.
//
// Minimal reproducer without Burrow: the tsmls->mlsgo row.
func TestTSMLSBlankRootCommitSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := testConfig(ctx, t)
	cases := []struct {
		committer, receiver string
		wantOK              bool
	}{
		{KindBurrow, KindMLSGo, true},
		{KindMLSGo, KindBurrow, true},
		{KindBurrow, KindBurrow, true},
		{KindTSMLS, KindTSMLS, true}, // ts-mls is consistent with itself
		{KindTSMLS, KindBurrow, false},
		{KindBurrow, KindTSMLS, false},
		{KindTSMLS, KindMLSGo, false}, // the independent referee agrees with Burrow
		{KindMLSGo, KindTSMLS, false},
		// ts-mls 2.0.0-rc.10 still climbs to the root. (Its own commit in
		// this shape is a lone Remove, which it sends without UpdatePath,
		// TestTSMLS2PathlessRemoveCommit, so only its receiving side is
		// pinned here.)
		{KindBurrow, KindTSMLS2, false},
		{KindMLSGo, KindTSMLS2, false},
	}
	for _, tc := range cases {
		t.Run(tc.committer+"->"+tc.receiver, func(t *testing.T) {
			g := &testGroup{t: t, ctx: ctx, cfg: cfg}
			alice := g.newMember("alice", KindMLSGo)
			bob := g.newMember("bob", KindMLSGo)
			carol := g.newMember("carol", tc.receiver)
			dave := g.newMember("dave", tc.committer)
			g.create(alice)
			for _, m := range []*member{bob, carol, dave} {
				g.mustAdd(alice, m)
			}
			if leaf := g.leafOf(alice, dave); leaf != 3 {
				t.Fatalf("dave at leaf %d, want 3", leaf)
			}
			g.remove(alice, bob)
			g.converge()

			var c CommitResult
			g.call(dave, "remove_member", RemoveMemberArgs{LeafIndex: g.leafOf(dave, alice)}, &c)
			g.members = []*member{carol, dave}
			if e, ok := carol.p.(*Engine); ok && !tc.wantOK {
				// Our own refusal, through the Go API so that it is matched by
				// its sentinel rather than its text. (Only once: a PrivateMessage
				// commit's handshake key is consumed even when it is refused.)
				_, err := e.Group().ProcessMessage(c.Commit)
				if !errors.Is(err, mls.ErrConfirmationTag) {
					t.Fatalf("our engine refused with %v, want %v", err, mls.ErrConfirmationTag)
				}
				t.Logf("carol (burrow) refused dave's (%s) commit, as expected: %v", tc.committer, err)
				return
			}
			var res ProcessResult
			err := carol.p.Call(ctx, "process", MessageArgs{Message: c.Commit}, &res)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("carol (%s) refused dave's (%s) commit: %v", tc.receiver, tc.committer, err)
				}
				if res.Kind != "commit" || res.Epoch != c.Epoch {
					t.Fatalf("carol processed a %s to epoch %d, want a commit to %d", res.Kind, res.Epoch, c.Epoch)
				}
				g.converge()
				return
			}
			if err == nil {
				t.Fatalf("carol (%s) accepted dave's (%s) commit; the ts-mls 1.6.4 commit_secret quirk seems gone: update this test, TestEngineInterop and interop/README.md", tc.receiver, tc.committer)
			}
			var ce *CallError
			if !errors.As(err, &ce) || !strings.Contains(strings.ToLower(ce.Message), "confirmation tag") {
				// Only the foreign process's text tells why; any other refusal
				// would be a different interop failure.
				t.Fatalf("carol (%s) refused dave's (%s) commit, but not for its confirmation tag: %v", tc.receiver, tc.committer, err)
			}
			t.Logf("carol (%s) refused dave's (%s) commit, as expected: %v", tc.receiver, tc.committer, err)
		})
	}
}
