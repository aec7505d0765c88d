package mls

import (
	"crypto/sha256"
	"fmt"

	"github.com/burrow-relay/burrow/mls/secrettree"
)

// AppliedProposal is one proposal a commit applies.
type AppliedProposal struct {
	Proposal *Proposal
	// Sender proposed it: the committer for a proposal given by value.
	Sender Sender
	// Ref is the ProposalRef of a proposal the commit names by reference,
	// nil for one it carries by value.
	Ref []byte
}

// StagedCommit is a commit that passed every check but is not applied
// yet: one this member created (Group.Commit) or received
// (Group.StageCommit). Several commits of one epoch can be staged side by
// side, inspected, and one of them merged (Group.MergeCommit); the others
// must then be discarded (Group.DiscardCommit) so that their secrets are
// zeroed. A staged commit can only be merged into the epoch it was staged
// in.
type StagedCommit struct {
	// Committer is the commit's sender: a member, or an external joiner
	// (SenderNewMemberCommit).
	Committer Sender
	// CommitterLeaf is the committer's leaf in the new epoch (an external
	// joiner's new leaf).
	CommitterLeaf uint32
	// Proposals are the proposals the commit applies, in commit order.
	Proposals []AppliedProposal
	// Epoch is the epoch the commit was sent in; NewEpoch the one it
	// creates.
	Epoch, NewEpoch uint64
	// Own reports a commit this member created.
	Own bool
	// Removed reports that the commit removes this member.
	Removed bool
	// ReInit is the committed ReInit proposal, if any.
	ReInit            *ReInit
	AuthenticatedData []byte
	// WireFormat is the commit's framing.
	WireFormat WireFormat
	// Message is the encoded MLSMessage carrying the commit.
	Message []byte

	group *Group
	base  *epochState // the state the commit applies to
	next  *epochState // the new epoch's state (nil when Removed)
	// attempt consumes the handshake key of a received PrivateMessage
	// commit when the commit is merged.
	attempt *secrettree.Attempt
	done    bool
}

// discard zeroes a staged commit's secrets; it can no longer be merged.
func (sc *StagedCommit) discard() {
	if sc.done {
		return
	}
	sc.done = true
	if sc.attempt != nil {
		sc.attempt.Discard()
	}
	if sc.next != nil {
		sc.next.drop()
	}
}

// processed reports the merged commit as ProcessMessage does.
func (sc *StagedCommit) processed() *Processed {
	return &Processed{
		ContentType: ContentCommit, Sender: sc.Committer, Epoch: sc.Epoch, AuthenticatedData: sc.AuthenticatedData,
		NewEpoch: sc.NewEpoch, Removed: sc.Removed, ReInit: sc.ReInit, Own: sc.Own, Proposals: sc.Proposals,
	}
}

// StageCommit authenticates and validates a commit (an encoded MLSMessage)
// with every check ProcessMessage makes, without changing the group. This
// member's own pending commit, coming back, is returned as it is (Own).
// Merge the result with MergeCommit or drop it with DiscardCommit.
func (g *Group) StageCommit(raw []byte) (*StagedCommit, error) {
	m, err := DecodeMLSMessage(raw)
	if err != nil {
		return nil, err
	}
	if isHandshake(m) && !isCommit(m) {
		return nil, ErrNotCommit
	}
	r, err := g.receive(m, raw)
	if err != nil {
		return nil, err
	}
	if r.staged == nil {
		r.discard()
		return nil, ErrNotCommit
	}
	return r.staged, nil
}

// isHandshake reports whether m is a PublicMessage or PrivateMessage.
func isHandshake(m *MLSMessage) bool {
	return m.PublicMessage != nil || m.PrivateMessage != nil
}

// isCommit reports whether a group message carries a commit.
func isCommit(m *MLSMessage) bool {
	switch {
	case m.PublicMessage != nil:
		return m.PublicMessage.Content.ContentType == ContentCommit
	case m.PrivateMessage != nil:
		return m.PrivateMessage.ContentType == ContentCommit
	}
	return false
}

// MergeCommit applies a staged commit: the group enters the new epoch (or,
// when the commit removes this member, becomes inactive). Any other
// commit staged for the same epoch, this member's pending one included,
// is void afterwards.
func (g *Group) MergeCommit(sc *StagedCommit) (*Processed, error) {
	if sc == nil || sc.group != g || sc.done {
		return nil, fmt.Errorf("%w: merged, discarded or staged on another group", ErrStaleCommit)
	}
	if g.inactive != nil {
		return nil, g.inactive
	}
	if sc.base != g.st {
		return nil, fmt.Errorf("%w: staged in epoch %d, group in epoch %d", ErrStaleCommit, sc.Epoch, g.st.ctx.Epoch)
	}
	sc.done = true
	if sc.attempt != nil {
		sc.attempt.Commit()
	}
	out := sc.processed()
	if sc.Removed {
		g.leave(fmt.Errorf("%w: removed in epoch %d", ErrInactive, sc.NewEpoch))
		return out, nil
	}
	var own []byte
	if sc.Own {
		d := sha256.Sum256(sc.Message)
		own = d[:]
	}
	g.install(sc.next, own)
	if sc.ReInit != nil {
		g.reinit = sc.ReInit
		g.inactive = fmt.Errorf("%w: re-initialized", ErrInactive)
	}
	return out, nil
}

// DiscardCommit drops a staged commit and zeroes its secrets. Discarding
// this member's pending commit is DiscardPendingCommit.
func (g *Group) DiscardCommit(sc *StagedCommit) {
	if sc == nil || sc.group != g {
		return
	}
	if g.pending == sc {
		g.pending = nil
	}
	sc.discard()
}

// PendingCommit returns the commit this member created and has not merged
// or discarded, or nil.
func (g *Group) PendingCommit() *StagedCommit { return g.pending }

// MergePendingCommit enters the epoch of the commit this member created.
func (g *Group) MergePendingCommit() error {
	if g.pending == nil {
		return ErrNoPendingCommit
	}
	_, err := g.MergeCommit(g.pending)
	return err
}

// DiscardPendingCommit forgets an unmerged commit (for example one the
// delivery service rejected).
func (g *Group) DiscardPendingCommit() {
	g.DiscardCommit(g.pending)
}
