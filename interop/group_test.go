package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	// suite is the group's cipher suite; zero means Suite0001.
	suite uint16
	// tsmlsPublic has ts-mls members send the commits of commitWith as
	// PublicMessage (see TestMLSGoPaddedPrivateCommit).
	tsmlsPublic bool
}

func (g *testGroup) cipherSuite() uint16 {
	if g.suite == 0 {
		return Suite0001
	}
	return g.suite
}

func (g *testGroup) call(m *member, op string, args, out any) {
	g.t.Helper()
	if err := m.p.Call(g.ctx, op, args, out); err != nil {
		g.t.Fatalf("%s (%s): %v", m.name, m.p.Kind(), err)
	}
}

// newMember starts a member of the given kind: KindBurrow is an engine in
// this process, any other kind a peer process (KindBurrowPeer needs
// g.cfg.BurrowPeer).
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
	g.call(creator, "create_group", CreateGroupArgs{GroupID: randomBytes(g.t, 32), Identity: creator.identity, Suite: g.cipherSuite()}, &res)
	if res.Epoch != 0 {
		g.t.Fatalf("%s's new group at epoch %d, want 0", creator.name, res.Epoch)
	}
	g.members = []*member{creator}
}

// broadcast has every member but the sender process msg and checks the
// kind, the epoch reached and, for application messages, the plaintext.
func (g *testGroup) broadcast(sender *member, msg []byte, wantKind string, wantEpoch uint64, wantPlain []byte) {
	g.t.Helper()
	others := slices.DeleteFunc(slices.Clone(g.members), func(m *member) bool { return m == sender })
	err := g.each(others, func(m *member) error {
		var res ProcessResult
		if err := m.p.Call(g.ctx, "process", MessageArgs{Message: msg}, &res); err != nil {
			return fmt.Errorf("%s (%s) processing a %s from %s (%s): %w", m.name, m.p.Kind(), wantKind, sender.name, sender.p.Kind(), err)
		}
		if res.Kind != wantKind || res.Epoch != wantEpoch {
			return fmt.Errorf("%s (%s) processed a %s from %s (%s) at epoch %d, want a %s at epoch %d",
				m.name, m.p.Kind(), res.Kind, sender.name, sender.p.Kind(), res.Epoch, wantKind, wantEpoch)
		}
		if wantPlain != nil && !bytes.Equal(res.Plaintext, wantPlain) {
			return fmt.Errorf("%s (%s) decrypted %q from %s (%s), want %q", m.name, m.p.Kind(), res.Plaintext, sender.name, sender.p.Kind(), wantPlain)
		}
		return nil
	})
	if err != nil {
		g.t.Fatal(err)
	}
}

// each runs fn for every member, several at a time (each member is its own
// process or engine, so their calls are independent), and returns the
// first error.
func (g *testGroup) each(ms []*member, fn func(m *member) error) error {
	errs := make([]error, len(ms))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(m)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// add has committer add joiner's fresh KeyPackage; the others process the
// commit and the joiner joins from the Welcome. The joiner's error is
// returned for quirk tests.
func (g *testGroup) add(committer, joiner *member) error {
	g.t.Helper()
	var kp KeyPackageResult
	g.call(joiner, "create_key_package", CreateKeyPackageArgs{Identity: joiner.identity, Suite: g.cipherSuite()}, &kp)
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

// converge checks that every member agrees (see agree) and that each
// member's application message reaches all the others.
func (g *testGroup) converge() {
	g.t.Helper()
	epoch := g.agree()
	for _, m := range g.members {
		plain := fmt.Appendf(nil, "epoch %d from %s (%s)", epoch, m.name, m.p.Kind())
		var pr ProtectResult
		g.call(m, "protect", ProtectArgs{Plaintext: plain}, &pr)
		g.broadcast(m, pr.Message, "application", epoch, plain)
	}
}

// agree checks that every member is at the same epoch with the same member
// list, epoch authenticator and 32-byte exporter output (same label and
// context everywhere), and returns that epoch.
func (g *testGroup) agree() uint64 {
	g.t.Helper()
	type view struct {
		st   StateResult
		auth ValueResult
		exp  ExportResult
	}
	views := make([]view, len(g.members))
	index := make(map[*member]int, len(g.members))
	for i, m := range g.members {
		index[m] = i
	}
	err := g.each(g.members, func(m *member) error {
		v := &views[index[m]]
		if err := m.p.Call(g.ctx, "state", nil, &v.st); err != nil {
			return fmt.Errorf("%s (%s): %w", m.name, m.p.Kind(), err)
		}
		if err := m.p.Call(g.ctx, "epoch_authenticator", nil, &v.auth); err != nil {
			return fmt.Errorf("%s (%s): %w", m.name, m.p.Kind(), err)
		}
		ctx := binary.BigEndian.AppendUint64([]byte("epoch "), v.st.Epoch)
		if err := m.p.Call(g.ctx, "export", ExportArgs{Label: "burrow interop", Context: ctx, Length: 32}, &v.exp); err != nil {
			return fmt.Errorf("%s (%s): %w", m.name, m.p.Kind(), err)
		}
		return nil
	})
	if err != nil {
		g.t.Fatal(err)
	}
	first, who := views[0], g.members[0]
	for i, m := range g.members {
		v := views[i]
		if len(v.auth.Value) != 32 || len(v.exp.Secret) != 32 {
			g.t.Fatalf("%s (%s): epoch authenticator of %d bytes, exporter of %d, want 32 each", m.name, m.p.Kind(), len(v.auth.Value), len(v.exp.Secret))
		}
		slices.SortFunc(v.st.Members, func(a, b Member) int { return int(a.LeafIndex) - int(b.LeafIndex) })
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
		self := slices.IndexFunc(v.st.Members, func(x Member) bool { return bytes.Equal(x.Identity, m.identity) })
		if self < 0 || v.st.Members[self].LeafIndex != v.st.OwnLeafIndex {
			g.t.Fatalf("%s (%s) says it is at leaf %d but its member list %v places it elsewhere", m.name, m.p.Kind(), v.st.OwnLeafIndex, v.st.Members)
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
	return first.st.Epoch
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
