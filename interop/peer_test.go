package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// requireServicesEnv turns a missing peer from a skip into a failure (CI sets it).
const requireServicesEnv = "RELAY_TEST_REQUIRE_SERVICES"

// startPeer starts a peer for the test and closes it at cleanup. A peer that
// cannot run here skips the test loudly, or fails it when services are required.
func startPeer(ctx context.Context, t *testing.T, cfg Config, kind string) *Peer {
	t.Helper()
	p, err := cfg.Start(ctx, kind)
	if errors.Is(err, ErrUnavailable) && kind == KindTSMLS {
		// A fresh checkout has no node_modules: install the locked versions.
		if ierr := cfg.InstallNodePackages(ctx); ierr == nil {
			p, err = cfg.Start(ctx, kind)
		} else {
			err = errors.Join(err, ierr)
		}
	}
	if errors.Is(err, ErrUnavailable) {
		if os.Getenv(requireServicesEnv) == "1" {
			t.Fatalf("%s=1 but the %s peer cannot run: %v", requireServicesEnv, kind, err)
		}
		t.Skipf("!!! MLS INTEROP NOT TESTED: the %s peer cannot run here: %v (set %s=1 to make this a failure)",
			kind, err, requireServicesEnv)
	}
	if err != nil {
		t.Fatalf("start %s peer: %v", kind, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close %s peer: %v", kind, err)
		}
	})
	return p
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// testConfig builds the mls-go peer once for a whole test, so each Start only
// runs it.
func testConfig(ctx context.Context, t *testing.T) Config {
	t.Helper()
	bin, err := Config{}.BuildMLSGoPeer(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("build the mls-go peer: %v", err)
	}
	return Config{MLSGoPeer: bin}
}

// member is one peer process in a test group.
type member struct {
	name     string
	peer     *Peer
	identity []byte
}

// testGroup tracks who is in the group and checks that everyone agrees.
type testGroup struct {
	t       *testing.T
	ctx     context.Context
	cfg     Config
	members []*member // current members, in join order
}

func (g *testGroup) call(m *member, op string, args, out any) {
	g.t.Helper()
	if err := m.peer.Call(g.ctx, op, args, out); err != nil {
		g.t.Fatalf("%s (%s): %v", m.name, m.peer.Kind(), err)
	}
}

// newMember starts a peer with a fresh 32-byte identity (the size of a Nostr
// x-only public key, which is what Marmot puts in the BasicCredential).
func (g *testGroup) newMember(name, kind string) *member {
	g.t.Helper()
	return &member{name: name, peer: startPeer(g.ctx, g.t, g.cfg, kind), identity: randomBytes(g.t, 32)}
}

func (g *testGroup) create(creator *member) {
	g.t.Helper()
	var res EpochResult
	g.call(creator, "create_group", CreateGroupArgs{GroupID: randomBytes(g.t, 32), Identity: creator.identity, Suite: Suite0001}, &res)
	if res.Epoch != 0 {
		g.t.Fatalf("new group at epoch %d, want 0", res.Epoch)
	}
	g.members = []*member{creator}
}

// broadcast has every member but the sender process msg and checks the kind
// and, for commits, the epoch reached.
func (g *testGroup) broadcast(sender *member, msg []byte, wantKind string, wantEpoch uint64, wantPlain []byte) {
	g.t.Helper()
	for _, m := range g.members {
		if m == sender {
			continue
		}
		var res ProcessResult
		g.call(m, "process", MessageArgs{Message: msg}, &res)
		if res.Kind != wantKind {
			g.t.Fatalf("%s processed a %s from %s, want %s", m.name, res.Kind, sender.name, wantKind)
		}
		if res.Epoch != wantEpoch {
			g.t.Fatalf("%s at epoch %d after %s from %s, want %d", m.name, res.Epoch, wantKind, sender.name, wantEpoch)
		}
		if wantPlain != nil && !bytes.Equal(res.Plaintext, wantPlain) {
			g.t.Fatalf("%s decrypted %q from %s, want %q", m.name, res.Plaintext, sender.name, wantPlain)
		}
	}
}

// add has committer add joiner; the others process the commit and the joiner
// joins from the Welcome. It returns the joiner's error, if any, so quirk tests
// can look at it.
func (g *testGroup) add(committer, joiner *member) error {
	g.t.Helper()
	var kp KeyPackageResult
	g.call(joiner, "create_key_package", CreateKeyPackageArgs{Identity: joiner.identity, Suite: Suite0001}, &kp)
	var c CommitResult
	g.call(committer, "add_member", AddMemberArgs{KeyPackage: kp.KeyPackage}, &c)
	if len(c.Welcome) == 0 {
		g.t.Fatalf("%s added %s but made no Welcome", committer.name, joiner.name)
	}
	g.broadcast(committer, c.Commit, "commit", c.Epoch, nil)
	var j EpochResult
	if err := joiner.peer.Call(g.ctx, "join", JoinArgs{Welcome: c.Welcome}, &j); err != nil {
		return err
	}
	if j.Epoch != c.Epoch {
		g.t.Fatalf("%s joined at epoch %d, want %d", joiner.name, j.Epoch, c.Epoch)
	}
	g.members = append(g.members, joiner)
	return nil
}

func (g *testGroup) mustAdd(committer, joiner *member) {
	g.t.Helper()
	if err := g.add(committer, joiner); err != nil {
		g.t.Fatalf("%s (%s) joining from %s's (%s) Welcome: %v", joiner.name, joiner.peer.Kind(), committer.name, committer.peer.Kind(), err)
	}
}

func (g *testGroup) update(committer *member) {
	g.t.Helper()
	var c CommitResult
	g.call(committer, "commit_update", nil, &c)
	g.broadcast(committer, c.Commit, "commit", c.Epoch, nil)
}

func (g *testGroup) remove(committer, target *member) {
	g.t.Helper()
	var st StateResult
	g.call(committer, "state", nil, &st)
	i := slices.IndexFunc(st.Members, func(m Member) bool { return bytes.Equal(m.Identity, target.identity) })
	if i < 0 {
		g.t.Fatalf("%s does not see %s in the group", committer.name, target.name)
	}
	var c CommitResult
	g.call(committer, "remove_member", RemoveMemberArgs{LeafIndex: st.Members[i].LeafIndex}, &c)
	// The removed member stops here; the rest must follow the commit.
	g.members = slices.DeleteFunc(g.members, func(m *member) bool { return m == target })
	g.broadcast(committer, c.Commit, "commit", c.Epoch, nil)
}

// converge checks that every member is at the same epoch with the same
// members, epoch authenticator and exporter output, and that each member's
// application message reaches all the others.
func (g *testGroup) converge() {
	g.t.Helper()
	type view struct {
		st   StateResult
		auth ValueResult
		exp  ExportResult
	}
	views := make([]view, len(g.members))
	for i, m := range g.members {
		v := &views[i]
		g.call(m, "state", nil, &v.st)
		g.call(m, "epoch_authenticator", nil, &v.auth)
		ctx := binary.BigEndian.AppendUint64([]byte("epoch "), v.st.Epoch)
		g.call(m, "export", ExportArgs{Label: "burrow interop", Context: ctx, Length: 32}, &v.exp)
		if len(v.auth.Value) == 0 || len(v.exp.Secret) != 32 {
			g.t.Fatalf("%s: epoch authenticator %x, exporter %x", m.name, v.auth.Value, v.exp.Secret)
		}
		slices.SortFunc(v.st.Members, func(a, b Member) int { return int(a.LeafIndex) - int(b.LeafIndex) })
	}
	want := make([][]byte, len(g.members))
	for i, m := range g.members {
		want[i] = m.identity
	}
	for i, m := range g.members {
		v, first := views[i], views[0]
		if v.st.Epoch != first.st.Epoch {
			g.t.Fatalf("%s at epoch %d, %s at %d", m.name, v.st.Epoch, g.members[0].name, first.st.Epoch)
		}
		if !bytes.Equal(v.auth.Value, first.auth.Value) {
			g.t.Fatalf("epoch %d: %s's epoch_authenticator %x differs from %s's %x", v.st.Epoch, m.name, v.auth.Value, g.members[0].name, first.auth.Value)
		}
		if !bytes.Equal(v.exp.Secret, first.exp.Secret) {
			g.t.Fatalf("epoch %d: %s's exporter %x differs from %s's %x", v.st.Epoch, m.name, v.exp.Secret, g.members[0].name, first.exp.Secret)
		}
		if !slices.EqualFunc(v.st.Members, first.st.Members, func(a, b Member) bool {
			return a.LeafIndex == b.LeafIndex && bytes.Equal(a.Identity, b.Identity)
		}) {
			g.t.Fatalf("epoch %d: %s sees members %v, %s sees %v", v.st.Epoch, m.name, v.st.Members, g.members[0].name, first.st.Members)
		}
		got := make([][]byte, len(v.st.Members))
		for k, mm := range v.st.Members {
			got[k] = mm.Identity
		}
		if len(got) != len(want) {
			g.t.Fatalf("epoch %d: %s sees %d members, want %d", v.st.Epoch, m.name, len(got), len(want))
		}
		for k, id := range want {
			if !slices.ContainsFunc(got, func(b []byte) bool { return bytes.Equal(b, id) }) {
				g.t.Fatalf("epoch %d: %s does not see %s", v.st.Epoch, m.name, g.members[k].name)
			}
		}
	}
	for _, m := range g.members {
		plain := fmt.Appendf(nil, "epoch %d from %s", views[0].st.Epoch, m.name)
		var pr ProtectResult
		g.call(m, "protect", ProtectArgs{Plaintext: plain}, &pr)
		g.broadcast(m, pr.Message, "application", views[0].st.Epoch, plain)
	}
}

// TestPeersTalkToEachOther runs one group across ts-mls and mls-go processes:
// ts-mls creates it and adds an mls-go member, then each side in turn commits
// an update, an add or a remove, and after every epoch all members must agree
// on the epoch, the member list, the epoch authenticator and the exporter
// output, and read each other's application messages.
func TestPeersTalkToEachOther(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := &testGroup{t: t, ctx: ctx, cfg: testConfig(ctx, t)}
	alice := g.newMember("alice", KindTSMLS)
	bob := g.newMember("bob", KindMLSGo)
	carol := g.newMember("carol", KindTSMLS)
	dave := g.newMember("dave", KindMLSGo)

	g.create(alice)
	g.converge()
	g.mustAdd(alice, bob) // ts-mls commits travel as PrivateMessage, mls-go's as PublicMessage
	g.converge()

	// Each step is one commit; the committing side alternates between the
	// implementations, and after each one everybody must agree.
	steps := []struct {
		name              string
		committer, target *member
		op                string
	}{
		{"mls-go updates", bob, nil, "update"},
		{"ts-mls updates", alice, nil, "update"},
		{"mls-go adds a ts-mls member", bob, carol, "add"},
		{"ts-mls adds an mls-go member", alice, dave, "add"},
		{"mls-go updates in a four-member tree", dave, nil, "update"},
		{"ts-mls updates in a four-member tree", carol, nil, "update"},
		{"mls-go removes a ts-mls member", dave, carol, "remove"},
		{"ts-mls removes an mls-go member", alice, bob, "remove"},
		{"mls-go updates after removals", dave, nil, "update"},
		{"ts-mls updates after removals", alice, nil, "update"},
	}
	for _, s := range steps {
		t.Logf("step: %s", s.name)
		switch s.op {
		case "update":
			g.update(s.committer)
		case "add":
			g.mustAdd(s.committer, s.target)
		case "remove":
			g.remove(s.committer, s.target)
		}
		g.converge()
	}
	if len(g.members) != 2 || g.members[0] != alice || g.members[1] != dave {
		t.Fatalf("final members %d, want alice and dave", len(g.members))
	}
}

// TestTSMLSUnmergedLeavesQuirk builds an eight-leaf tree in which leaf 3 is
// listed in the unmerged_leaves of node 3 as {3} and of node 7 as {3, 5}: two
// Add commits without a path (ts-mls sends none for add-only commits) after a
// path refilled both parents (RFC 9420 section 7.7 adds a new leaf to every
// non-blank parent above it). Section 12.4.3.1 allows this: each intermediate
// node must list the leaf, nothing requires the lists to match. ts-mls 1.6.4's
// joinGroup demands identical lists and refuses the Welcome; mls-go accepts it
// and then agrees with everyone. ts-mls is the side that is wrong here; Burrow's
// engine must behave like mls-go.
func TestTSMLSUnmergedLeavesQuirk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := testConfig(ctx, t)
	cases := []struct {
		joiner     string
		wantJoinOK bool
	}{
		{KindMLSGo, true},
		{KindTSMLS, false},
	}
	for _, tc := range cases {
		t.Run(tc.joiner, func(t *testing.T) {
			g := &testGroup{t: t, ctx: ctx, cfg: cfg}
			alice := g.newMember("alice", KindTSMLS) // commits without a path when it only adds
			g.create(alice)
			var others []*member
			for _, name := range []string{"bob", "carol", "dave", "erin"} {
				m := g.newMember(name, KindMLSGo)
				g.mustAdd(alice, m) // leaves 1..4; the tree grows to eight leaves
				others = append(others, m)
			}
			dave := others[2]
			// Removing leaf 3 blanks its direct path (nodes 5, 3, 7); Alice's
			// path then refills nodes 1, 3 and 7 with empty unmerged lists.
			g.remove(alice, dave)
			// Fred lands on leaf 3: node 5 is blank, nodes 3 and 7 list {3}.
			fred := g.newMember("fred", KindMLSGo)
			g.mustAdd(alice, fred)
			g.converge()
			// Gina lands on leaf 5: node 7 now lists {3, 5}, node 3 still {3}.
			gina := g.newMember("gina", tc.joiner)
			err := g.add(alice, gina)
			var ce *CallError
			switch {
			case tc.wantJoinOK && err != nil:
				t.Fatalf("mls-go refused a valid Welcome: %v", err)
			case !tc.wantJoinOK && err == nil:
				t.Fatalf("ts-mls 1.6.4 accepted the Welcome; its unmerged_leaves quirk seems gone, update DESIGN.md and this test")
			case !tc.wantJoinOK && !errors.As(err, &ce):
				t.Fatalf("ts-mls join failed in a way other than an MLS refusal: %v", err)
			case !tc.wantJoinOK:
				t.Logf("ts-mls refused, as expected: %v", err)
			default:
				g.converge()
			}
		})
	}
}
