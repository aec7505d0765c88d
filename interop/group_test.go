package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

// party is anything that answers the peer protocol: a subprocess *Peer or
// Burrow's in-process *Engine.
type party interface {
	Call(ctx context.Context, op string, args, out any) error
	Kind() string
}

// member is one member of a testGroup.
type member struct {
	name     string
	p        party
	identity []byte
}

// testGroup is one MLS group spread over any mix of implementations: it
// tracks who is in the group and checks that everyone agrees after each
// epoch.
type testGroup struct {
	t       *testing.T
	ctx     context.Context
	cfg     Config
	engine  EngineConfig
	members []*member
}

func (g *testGroup) call(m *member, op string, args, out any) {
	g.t.Helper()
	if err := m.p.Call(g.ctx, op, args, out); err != nil {
		g.t.Fatalf("%s (%s): %v", m.name, m.p.Kind(), err)
	}
}

// newMember starts a member of the given kind: KindBurrow is an engine in
// this process, any other kind a peer process.
func (g *testGroup) newMember(name, kind string) *member {
	g.t.Helper()
	m := &member{name: name, identity: randomBytes(g.t, 32)}
	if kind == KindBurrow {
		e := NewEngine(g.engine)
		g.t.Cleanup(func() { _ = e.Close() })
		m.p = e
	} else {
		m.p = startPeer(g.ctx, g.t, g.cfg, kind)
	}
	return m
}

func (g *testGroup) create(creator *member) {
	g.t.Helper()
	var res EpochResult
	g.call(creator, "create_group", CreateGroupArgs{GroupID: randomBytes(g.t, 32), Identity: creator.identity, Suite: Suite0001}, &res)
	if res.Epoch != 0 {
		g.t.Fatalf("%s's new group at epoch %d, want 0", creator.name, res.Epoch)
	}
	g.members = []*member{creator}
}

// broadcast has every member but the sender process msg and checks the
// kind, the epoch reached and, for application messages, the plaintext.
func (g *testGroup) broadcast(sender *member, msg []byte, wantKind string, wantEpoch uint64, wantPlain []byte) {
	g.t.Helper()
	for _, m := range g.members {
		if m == sender {
			continue
		}
		var res ProcessResult
		if err := m.p.Call(g.ctx, "process", MessageArgs{Message: msg}, &res); err != nil {
			g.t.Fatalf("%s (%s) processing a %s from %s (%s): %v", m.name, m.p.Kind(), wantKind, sender.name, sender.p.Kind(), err)
		}
		if res.Kind != wantKind || res.Epoch != wantEpoch {
			g.t.Fatalf("%s (%s) processed a %s from %s (%s) at epoch %d, want a %s at epoch %d",
				m.name, m.p.Kind(), res.Kind, sender.name, sender.p.Kind(), res.Epoch, wantKind, wantEpoch)
		}
		if wantPlain != nil && !bytes.Equal(res.Plaintext, wantPlain) {
			g.t.Fatalf("%s (%s) decrypted %q from %s (%s), want %q", m.name, m.p.Kind(), res.Plaintext, sender.name, sender.p.Kind(), wantPlain)
		}
	}
}

// add has committer add joiner's fresh KeyPackage; the others process the
// commit and the joiner joins from the Welcome. The joiner's error is
// returned for quirk tests.
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
	if err := joiner.p.Call(g.ctx, "join", JoinArgs{Welcome: c.Welcome}, &j); err != nil {
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
		g.t.Fatalf("%s (%s) joining from %s's (%s) Welcome: %v", joiner.name, joiner.p.Kind(), committer.name, committer.p.Kind(), err)
	}
}

func (g *testGroup) update(committer *member) {
	g.t.Helper()
	var c CommitResult
	g.call(committer, "commit_update", nil, &c)
	g.broadcast(committer, c.Commit, "commit", c.Epoch, nil)
}

// leafOf is the leaf at which viewer sees target.
func (g *testGroup) leafOf(viewer, target *member) uint32 {
	g.t.Helper()
	var st StateResult
	g.call(viewer, "state", nil, &st)
	i := slices.IndexFunc(st.Members, func(m Member) bool { return bytes.Equal(m.Identity, target.identity) })
	if i < 0 {
		g.t.Fatalf("%s does not see %s in the group", viewer.name, target.name)
	}
	return st.Members[i].LeafIndex
}

// removeLeaf has committer remove a leaf; gone (if any) stops following.
func (g *testGroup) removeLeaf(committer *member, leaf uint32, gone *member) {
	g.t.Helper()
	var c CommitResult
	g.call(committer, "remove_member", RemoveMemberArgs{LeafIndex: leaf}, &c)
	g.members = slices.DeleteFunc(g.members, func(m *member) bool { return m == gone })
	g.broadcast(committer, c.Commit, "commit", c.Epoch, nil)
}

func (g *testGroup) remove(committer, target *member) {
	g.t.Helper()
	g.removeLeaf(committer, g.leafOf(committer, target), target)
}

// converge checks that every member is at the same epoch with the same
// member list, epoch authenticator and 32-byte exporter output (same label
// and context everywhere), and that each member's application message
// reaches all the others.
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
		if len(v.auth.Value) != 32 || len(v.exp.Secret) != 32 {
			g.t.Fatalf("%s (%s): epoch authenticator of %d bytes, exporter of %d, want 32 each", m.name, m.p.Kind(), len(v.auth.Value), len(v.exp.Secret))
		}
		slices.SortFunc(v.st.Members, func(a, b Member) int { return int(a.LeafIndex) - int(b.LeafIndex) })
	}
	first, who := views[0], g.members[0]
	for i, m := range g.members {
		v := views[i]
		if v.st.Epoch != first.st.Epoch {
			g.t.Fatalf("%s (%s) at epoch %d, %s (%s) at %d", m.name, m.p.Kind(), v.st.Epoch, who.name, who.p.Kind(), first.st.Epoch)
		}
		if !bytes.Equal(v.auth.Value, first.auth.Value) {
			g.t.Fatalf("epoch %d: %s's (%s) epoch_authenticator %x differs from %s's (%s) %x", v.st.Epoch, m.name, m.p.Kind(), v.auth.Value, who.name, who.p.Kind(), first.auth.Value)
		}
		if !bytes.Equal(v.exp.Secret, first.exp.Secret) {
			g.t.Fatalf("epoch %d: %s's (%s) exporter %x differs from %s's (%s) %x", v.st.Epoch, m.name, m.p.Kind(), v.exp.Secret, who.name, who.p.Kind(), first.exp.Secret)
		}
		if !slices.EqualFunc(v.st.Members, first.st.Members, func(a, b Member) bool {
			return a.LeafIndex == b.LeafIndex && bytes.Equal(a.Identity, b.Identity)
		}) {
			g.t.Fatalf("epoch %d: %s (%s) sees members %v, %s (%s) sees %v", v.st.Epoch, m.name, m.p.Kind(), v.st.Members, who.name, who.p.Kind(), first.st.Members)
		}
		if got := g.leafOf(m, m); got != v.st.OwnLeafIndex {
			g.t.Fatalf("%s (%s) says it is at leaf %d but lists itself at %d", m.name, m.p.Kind(), v.st.OwnLeafIndex, got)
		}
	}
	if len(first.st.Members) != len(g.members) {
		g.t.Fatalf("epoch %d: members see %d leaves occupied, want %d", first.st.Epoch, len(first.st.Members), len(g.members))
	}
	for _, m := range g.members {
		if !slices.ContainsFunc(first.st.Members, func(x Member) bool { return bytes.Equal(x.Identity, m.identity) }) {
			g.t.Fatalf("epoch %d: %s is not in the member list", first.st.Epoch, m.name)
		}
	}
	for _, m := range g.members {
		plain := fmt.Appendf(nil, "epoch %d from %s (%s)", first.st.Epoch, m.name, m.p.Kind())
		var pr ProtectResult
		g.call(m, "protect", ProtectArgs{Plaintext: plain}, &pr)
		g.broadcast(m, pr.Message, "application", first.st.Epoch, plain)
	}
}

// step is one commit in a scripted test: committer updates, adds target or
// removes target.
type step struct {
	name              string
	committer, target *member
	op                string // "update", "add" or "remove"
}

// play runs the steps in order and checks that everyone agrees after each.
func (g *testGroup) play(steps []step) {
	g.t.Helper()
	for i, s := range steps {
		g.t.Logf("commit %d: %s (%s)", i+1, s.name, s.committer.p.Kind())
		switch s.op {
		case "update":
			g.update(s.committer)
		case "add":
			g.mustAdd(s.committer, s.target)
		case "remove":
			g.remove(s.committer, s.target)
		default:
			g.t.Fatalf("unknown step op %q", s.op)
		}
		g.converge()
	}
}
