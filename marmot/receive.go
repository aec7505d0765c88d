package marmot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
)

// ReceivedKind says what a group event carried.
type ReceivedKind uint8

// Kinds of received messages.
const (
	ReceivedApp ReceivedKind = iota + 1
	ReceivedProposal
	ReceivedCommit
)

// Received is what processing one group event did.
type Received struct {
	Kind ReceivedKind
	// ID is the Marmot message id (SHA-256 of the MLSMessage).
	ID [32]byte
	// Epoch is the epoch the message was sent in.
	Epoch uint64
	// Sender is the account of the MLS sender (the committer of a commit).
	Sender Pubkey
	// App is the payload of an application message.
	App *AppEvent
	// Proposal is the type of a stored proposal.
	Proposal mls.ProposalType
	// For a commit: the epoch it creates, whether it is on the canonical
	// branch now, the accounts it added and removed, and whether it
	// removed this member.
	NewEpoch       uint64
	Canonical      bool
	Added, Removed []Pubkey
	RemovedSelf    bool
	// Rewound reports a branch switch: convergence replaced canonical
	// commits with a better competing branch. Invalidated are the ids of
	// app payloads delivered earlier on the abandoned branch; Recovered the
	// payloads of the new branch not delivered before.
	Rewound     bool
	Invalidated [][32]byte
	Recovered   []Received
	// Unlocked are deferred events this one made decryptable, processed.
	Unlocked []*Received
}

// Receive processes one kind 445 event: envelope rules, event id and
// signature, trial decryption over the retained epochs' keys, then
// deduplication on the message id and the Marmot rules for the message it
// carries. A refused event changes no group state. An event no key opens
// is kept (up to a bound) and retried when the keys change; it is reported
// as ErrUndecryptable.
func (g *Group) Receive(ev *nostr.Event) (*Received, error) {
	if err := g.mls.Active(); err != nil {
		return nil, err
	}
	h, raw, err := CheckGroupEvent(ev)
	if err != nil {
		return nil, err
	}
	if err := VerifyEvent(ev); err != nil {
		return nil, err
	}
	if !g.knowsRoute(h) {
		return nil, fail(ErrGroupEvent, nil, "h %x is not one of this group's routing ids", h[:])
	}
	msg, n := g.open(raw, ev.Content)
	if n == nil {
		g.deferEvent(ev)
		return nil, fail(ErrUndecryptable, nil, "no retained epoch key opens the event; kept for retry")
	}
	r, err := g.handle(msg, n)
	if err != nil {
		return nil, err
	}
	if r.Kind == ReceivedCommit {
		g.retryDeferred(r)
	}
	return r, nil
}

func (g *Group) knowsRoute(h [32]byte) bool {
	for _, n := range g.nodes {
		if n.h == h {
			return true
		}
	}
	return false
}

// open tries every retained state's key, the canonical tip first.
func (g *Group) open(raw []byte, content string) ([]byte, *node) {
	order := append([]*node{g.tip}, g.nodes...)
	for _, n := range order {
		if msg, err := openRaw(n.key, raw); err == nil {
			return msg, n
		}
	}
	if g.opts.ReadLegacyNIP44 {
		for _, n := range order {
			if n.legacy == nil {
				continue
			}
			if msg, err := OpenLegacyGroupContent(n.legacy, content); err == nil {
				return msg, n
			}
		}
	}
	return nil, nil
}

func (g *Group) deferEvent(ev *nostr.Event) {
	for _, d := range g.deferred {
		if d.ID == ev.ID {
			return
		}
	}
	if len(g.deferred) == maxDeferred {
		g.deferred = g.deferred[1:]
	}
	g.deferred = append(g.deferred, ev)
}

// retryDeferred processes the kept events that a new state's key opens.
func (g *Group) retryDeferred(r *Received) {
	for progress := true; progress; {
		progress = false
		for i, ev := range g.deferred {
			_, raw, err := CheckGroupEvent(ev)
			if err != nil {
				continue
			}
			msg, n := g.open(raw, ev.Content)
			if n == nil {
				continue
			}
			g.deferred = slices.Delete(g.deferred, i, i+1)
			if got, err := g.handle(msg, n); err == nil {
				r.Unlocked = append(r.Unlocked, got)
			}
			progress = true
			break
		}
	}
}

// handle processes a decrypted MLSMessage sent in node n's epoch.
func (g *Group) handle(msg []byte, n *node) (*Received, error) {
	id := MessageID(msg)
	if _, dup := g.seen[id]; dup {
		return nil, fail(ErrDuplicate, nil, "message %x already processed", id[:8])
	}
	m, err := mls.DecodeMLSMessage(msg)
	if err != nil {
		return nil, fail(ErrGroupEvent, err, "content is not an MLSMessage: %v", err)
	}
	switch m.WireFormat {
	case mls.WireFormatPrivateMessage:
		if m.PrivateMessage.ContentType != mls.ContentApplication {
			return nil, fail(ErrForbidden, nil, "handshake messages must be PublicMessages in this profile")
		}
		return g.appMessage(msg, n, id)
	case mls.WireFormatPublicMessage:
		switch m.PublicMessage.Content.ContentType {
		case mls.ContentProposal:
			return g.proposal(msg, m.PublicMessage, n, id)
		case mls.ContentCommit:
			return g.commitOn(n, msg)
		}
		return nil, fail(ErrForbidden, nil, "application data must be a PrivateMessage")
	}
	return nil, fail(ErrGroupEvent, nil, "wire format %v does not belong in a group event", m.WireFormat)
}

// onCanonical reports whether n is the tip or one of its ancestors.
func (g *Group) onCanonical(n *node) bool {
	for c := g.tip; c != nil; c = c.parent {
		if c == n {
			return true
		}
	}
	return false
}

func (g *Group) appMessage(msg []byte, n *node, id [32]byte) (*Received, error) {
	grp := g.mls
	canonical := g.onCanonical(n)
	if !canonical {
		if n.state == nil {
			return nil, fail(ErrStale, nil, "the message's epoch is no longer retained")
		}
		var err error
		if grp, err = mls.RestoreGroup(n.state, g.sk, g.cfg); err != nil {
			return nil, err
		}
	}
	p, err := grp.ProcessMessage(msg)
	if err != nil {
		if errors.Is(err, mls.ErrOwnMessage) {
			return nil, fail(ErrDuplicate, err, "this member's own message")
		}
		return nil, fmt.Errorf("marmot: application message: %w", err)
	}
	sender, ok := accountAt(grp, p.Sender.Index)
	if !ok && canonical {
		sender, ok = g.pastAccount(p.Epoch, p.Sender.Index)
	}
	if !ok {
		return nil, fail(ErrAppEventAuthor, nil, "sender leaf %d has no account", p.Sender.Index)
	}
	if !canonical {
		if n.state, err = grp.MarshalState(); err != nil {
			return nil, err
		}
	}
	g.seen[id] = p.Epoch
	ev, err := ParseAppEvent(p.ApplicationData)
	if err == nil {
		err = ev.CheckAuthor(sender)
	}
	if err != nil {
		// The MLS message was valid (its keys are consumed); the payload is
		// dropped, never delivered.
		return nil, err
	}
	r := Received{Kind: ReceivedApp, ID: id, Epoch: p.Epoch, Sender: sender, App: &ev}
	if w := g.nodeAt(n, p.Epoch); w != nil {
		w.witnesses[sender] = true
		w.apps = append(w.apps, r)
	}
	if canonical {
		g.delivered[id] = true
	} else {
		// Held: delivered only if this branch becomes canonical.
		g.converge(&r)
	}
	return &r, nil
}

// nodeAt is the node of epoch on n's path (n itself, or an ancestor).
func (g *Group) nodeAt(n *node, epoch uint64) *node {
	for c := n; c != nil; c = c.parent {
		if c.epoch == epoch {
			return c
		}
	}
	return nil
}

// pastAccount finds the account of a leaf in a retained canonical epoch
// (a member removed since sent a late application message).
func (g *Group) pastAccount(epoch uint64, leaf uint32) (Pubkey, bool) {
	n := g.nodeAt(g.tip, epoch)
	if n == nil || n.state == nil {
		return Pubkey{}, false
	}
	grp, err := mls.RestoreGroup(n.state, g.sk, g.cfg)
	if err != nil {
		return Pubkey{}, false
	}
	return accountAt(grp, leaf)
}

func (g *Group) proposal(msg []byte, pm *mls.PublicMessage, n *node, id [32]byte) (*Received, error) {
	if n != g.tip {
		return nil, fail(ErrStale, nil, "proposal for an epoch that is not the current one")
	}
	c := &pm.Content
	if c.Sender.Type != mls.SenderMember || c.Proposal == nil {
		return nil, fail(ErrForbidden, nil, "proposals come from members in this profile")
	}
	// Authorize before the engine stores it: a refused proposal changes
	// nothing.
	if err := authorizeProposal(g.mls, c.Sender.Index, c.Proposal); err != nil {
		return nil, err
	}
	p, err := g.mls.ProcessMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("marmot: proposal: %w", err)
	}
	g.seen[id] = p.Epoch
	sender, _ := accountAt(g.mls, p.Sender.Index)
	return &Received{Kind: ReceivedProposal, ID: id, Epoch: p.Epoch, Sender: sender, Proposal: p.Proposal.Type}, nil
}

// commitOn processes a commit sent in node n's epoch: on the tip it is
// linear advancement; on any other retained state it builds a competing
// branch for convergence.
func (g *Group) commitOn(n *node, msg []byte) (*Received, error) {
	grp := g.mls
	if n != g.tip {
		if n.state == nil {
			return nil, fail(ErrStale, nil, "the commit's parent epoch is no longer retained")
		}
		var err error
		if grp, err = mls.RestoreGroup(n.state, g.sk, g.cfg); err != nil {
			return nil, err
		}
	}
	sc, err := grp.StageCommit(msg)
	if err != nil {
		if errors.Is(err, mls.ErrOwnCommitMerged) {
			return nil, fail(ErrDuplicate, err, "this member's own commit, already applied")
		}
		return nil, fmt.Errorf("marmot: commit: %w", err)
	}
	return g.applyCommit(n, grp, sc, msg)
}

// applyCommit authorizes a staged commit against its parent state, merges
// it, checks the resulting state, and records the new state: as the tip
// when the parent was the tip, as a competing branch otherwise.
func (g *Group) applyCommit(parent *node, grp *mls.Group, sc *mls.StagedCommit, msg []byte) (*Received, error) {
	privileged, err := authorizeCommit(grp, sc)
	if err != nil {
		if !sc.Own {
			grp.DiscardCommit(sc)
		}
		return nil, err
	}
	committer, _ := accountAt(grp, sc.Committer.Index)
	before := membersOf(grp)
	snapshot, err := grp.MarshalState()
	if err != nil {
		return nil, err
	}
	p, err := grp.MergeCommit(sc)
	if err != nil {
		return nil, fmt.Errorf("marmot: merge: %w", err)
	}
	id := MessageID(msg)
	g.seen[id] = parent.epoch
	r := &Received{Kind: ReceivedCommit, ID: id, Epoch: parent.epoch, Sender: committer, NewEpoch: p.NewEpoch}
	if p.Removed {
		r.RemovedSelf = true
		r.Canonical = grp == g.mls
		return r, nil
	}
	if _, err := ReadGroupState(grp.Extensions()); err != nil {
		delete(g.seen, id)
		if grp == g.mls {
			if g.mls, err = mls.RestoreGroup(snapshot, g.sk, g.cfg); err != nil {
				return nil, err
			}
		}
		return nil, fail(ErrForbidden, err, "the commit leaves the group outside the profile: %v", err)
	}
	after := membersOf(grp)
	for _, a := range after {
		if !slices.Contains(before, a) {
			r.Added = append(r.Added, a)
		}
	}
	for _, b := range before {
		if !slices.Contains(after, b) {
			r.Removed = append(r.Removed, b)
		}
	}
	child := &node{parent: parent, digest: sha256.Sum256(msg), committer: committer, privileged: privileged, witnesses: map[Pubkey]bool{}}
	if grp == g.mls {
		parent.state = snapshot
		if err := g.setTip(parent, child); err != nil {
			return nil, err
		}
		r.Canonical = true
		return r, nil
	}
	child.epoch = grp.Epoch()
	if child.state, err = grp.MarshalState(); err != nil {
		return nil, err
	}
	if child.key, err = GroupEventKey(grp); err != nil {
		return nil, err
	}
	if g.opts.ReadLegacyNIP44 {
		if child.legacy, err = LegacyGroupEventSecret(grp); err != nil {
			return nil, err
		}
	}
	st, _ := ReadGroupState(grp.Extensions())
	child.h = st.Routing.GroupID
	g.nodes = append(g.nodes, child)
	g.converge(r)
	r.Canonical = g.onCanonical(child)
	return r, nil
}

// converge switches the canonical branch while a retained branch beats it
// under convergence policy v1.
func (g *Group) converge(r *Received) {
	for changed := true; changed; {
		changed = false
		for _, c := range g.nodes {
			if c == g.tip || c.state == nil || g.hasChild(c) {
				continue
			}
			if g.beats(c, g.tip) {
				if err := g.switchTo(c, r); err == nil {
					changed = true
					break
				}
			}
		}
	}
}

func (g *Group) hasChild(n *node) bool {
	for _, c := range g.nodes {
		if c.parent == n {
			return true
		}
	}
	return false
}

// lca is the nearest common retained ancestor of a and b.
func lca(a, b *node) *node {
	for x := a; x != nil; x = x.parent {
		for y := b; y != nil; y = y.parent {
			if x == y {
				return x
			}
		}
	}
	return nil
}

// branchScore is a branch's standing in convergence policy v1.
type branchScore struct {
	effective, witnessScore int
	quorum                  bool
	privileged              bool
	committer               Pubkey
	digest                  [32]byte
}

func scoreBranch(tip, fork *node) branchScore {
	var depth, quorumEpochs, witnessScore int
	for n := tip; n != fork; n = n.parent {
		depth++
		w := len(n.witnesses)
		witnessScore += min(w, witnessQuorumSendersPerEpoch)
		if w >= witnessQuorumSendersPerEpoch {
			quorumEpochs++
		}
	}
	s := branchScore{witnessScore: witnessScore, quorum: quorumEpochs >= witnessQuorumEpochs,
		privileged: tip.privileged, committer: tip.committer, digest: tip.digest}
	s.effective = depth
	if s.quorum {
		s.effective += maxWitnessOverrideDepth
	}
	return s
}

// compareBranches orders two branches of one fork: negative when a ranks
// before (wins over) b. The order is the policy's: higher effective depth,
// quorum, higher witness score, privileged tip, lower committer, lower
// digest. Transport evidence never enters.
func compareBranches(a, b branchScore) int {
	switch {
	case a.effective != b.effective:
		return b.effective - a.effective
	case a.quorum != b.quorum:
		if a.quorum {
			return -1
		}
		return 1
	case a.witnessScore != b.witnessScore:
		return b.witnessScore - a.witnessScore
	case a.privileged != b.privileged:
		if a.privileged {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(a.committer[:], b.committer[:]); c != 0 {
		return c
	}
	return bytes.Compare(a.digest[:], b.digest[:])
}

// beats reports whether the branch ending at c wins over the canonical
// branch ending at t: both must fork at a retained state inside the
// rollback horizon.
func (g *Group) beats(c, t *node) bool {
	fork := lca(c, t)
	if fork == nil || t.epoch-fork.epoch > maxRewindCommits {
		return false
	}
	return compareBranches(scoreBranch(c, fork), scoreBranch(t, fork)) < 0
}

// switchTo makes c the canonical tip, keeping the abandoned branch's state.
func (g *Group) switchTo(c *node, r *Received) error {
	old := g.tip
	fork := lca(c, old)
	st, err := g.mls.MarshalState()
	if err != nil {
		return err
	}
	grp, err := mls.RestoreGroup(c.state, g.sk, g.cfg)
	if err != nil {
		return err
	}
	old.state, g.mls, c.state, g.tip = st, grp, nil, c
	g.Rewinds++
	r.Rewound = true
	for n := old; n != fork; n = n.parent {
		for _, a := range n.apps {
			if g.delivered[a.ID] {
				g.delivered[a.ID] = false
				r.Invalidated = append(r.Invalidated, a.ID)
			}
		}
	}
	for n := c; n != fork; n = n.parent {
		for _, a := range n.apps {
			if !g.delivered[a.ID] {
				g.delivered[a.ID] = true
				r.Recovered = append(r.Recovered, a)
			}
		}
	}
	g.prune()
	return nil
}

// authorizeCommit applies the admin policy to a staged commit, against its
// parent state m: a non-admin may commit only a self-update (no proposals)
// or only SelfRemoves, never both; everything else needs an admin. No admin
// may leave by SelfRemove; component updates must be valid; proposal types
// Marmot does not use are refused. privileged reports an admin-requiring
// commit (the convergence ranking's priority).
func authorizeCommit(m *mls.Group, sc *mls.StagedCommit) (privileged bool, err error) {
	st, err := ReadGroupState(m.Extensions())
	if err != nil {
		return false, err
	}
	if sc.Committer.Type != mls.SenderMember {
		return false, fail(ErrForbidden, nil, "external commits are not part of this profile")
	}
	committer, ok := accountAt(m, sc.Committer.Index)
	if !ok {
		return false, fail(ErrForbidden, nil, "committer has no account")
	}
	selfRemoves, others := 0, 0
	for _, ap := range sc.Proposals {
		p := ap.Proposal
		switch p.Type {
		case mls.ProposalSelfRemove:
			leaver, ok := accountAt(m, ap.Sender.Index)
			if ap.Sender.Type != mls.SenderMember || !ok {
				return false, fail(ErrForbidden, nil, "SelfRemove from a non-member")
			}
			if st.Admins.IsAdmin(leaver) {
				return false, fail(ErrForbidden, nil, "admin %s cannot leave by SelfRemove", leaver.Hex())
			}
			selfRemoves++
		case mls.ProposalAppDataUpdate:
			if err := checkComponentUpdate(st, p.AppDataUpdate); err != nil {
				return false, err
			}
			others++
		case mls.ProposalGroupContextExtensions:
			if _, err := ReadGroupState(p.GroupContextExtensions.Extensions); err != nil {
				return false, fail(ErrForbidden, err, "new GroupContext extensions: %v", err)
			}
			others++
		case mls.ProposalAdd, mls.ProposalRemove, mls.ProposalUpdate:
			others++
		default:
			return false, fail(ErrForbidden, nil, "proposal type 0x%04x is not used by Marmot", uint16(p.Type))
		}
	}
	ordinary := others == 0
	if !ordinary && !st.Admins.IsAdmin(committer) {
		return true, fail(ErrNotAdmin, nil, "%s is not an admin; non-admins commit only a self-update or SelfRemoves", committer.Hex())
	}
	return !ordinary, nil
}

// authorizeProposal applies the admin policy to a standalone proposal from
// leaf sender: a non-admin may only propose SelfRemove; an admin may not.
func authorizeProposal(m *mls.Group, sender uint32, p *mls.Proposal) error {
	st, err := ReadGroupState(m.Extensions())
	if err != nil {
		return err
	}
	account, ok := accountAt(m, sender)
	if !ok {
		return fail(ErrForbidden, nil, "proposal from leaf %d, which has no account", sender)
	}
	admin := st.Admins.IsAdmin(account)
	switch p.Type {
	case mls.ProposalSelfRemove:
		if admin {
			return fail(ErrForbidden, nil, "admin %s cannot leave by SelfRemove", account.Hex())
		}
		return nil
	case mls.ProposalAppDataUpdate:
		if err := checkComponentUpdate(st, p.AppDataUpdate); err != nil {
			return err
		}
	case mls.ProposalGroupContextExtensions, mls.ProposalAdd, mls.ProposalRemove, mls.ProposalUpdate:
	default:
		return fail(ErrForbidden, nil, "proposal type 0x%04x is not used by Marmot", uint16(p.Type))
	}
	if !admin {
		return fail(ErrNotAdmin, nil, "%s is not an admin; non-admins propose only SelfRemove", account.Hex())
	}
	return nil
}
