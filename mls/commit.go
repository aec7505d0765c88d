package mls

import (
	"bytes"
	"errors"
	"fmt"
	"maps"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// resolveProposals turns a Commit's ProposalOrRef list into proposals with
// their senders: references from the proposals stored this epoch, values
// from the committer.
func (g *Group) resolveProposals(c *Commit, committer Sender) ([]storedProposal, []bool, error) {
	out := make([]storedProposal, len(c.Proposals))
	byRef := make([]bool, len(c.Proposals))
	for i, por := range c.Proposals {
		switch por.Type {
		case ProposalOrRefProposal:
			out[i] = storedProposal{proposal: por.Proposal, sender: committer}
		case ProposalOrRefReference:
			found := false
			for _, sp := range g.proposals {
				if bytes.Equal(sp.ref, por.Reference) {
					out[i], found = sp, true
					break
				}
			}
			if !found {
				return nil, nil, fmt.Errorf("%w: %x", ErrUnknownProposal, por.Reference)
			}
			byRef[i] = true
		}
	}
	for i := range out {
		for j := range i {
			if byRef[i] && byRef[j] && bytes.Equal(out[i].ref, out[j].ref) {
				return nil, nil, fmt.Errorf("%w: proposal referenced twice", ErrInvalidProposalList)
			}
		}
	}
	return out, byRef, nil
}

// provisionalContext is the GroupContext of the next epoch before the
// confirmed transcript hash is updated: path secrets are encrypted under
// it (RFC 9420 section 12.4.2).
func provisionalContext(old *GroupContext, s *staged, treeHash []byte) GroupContext {
	ctx := s.ctx
	ctx.Epoch = old.Epoch + 1
	ctx.TreeHash = treeHash
	ctx.ConfirmedTranscriptHash = old.ConfirmedTranscriptHash
	return ctx
}

// keepKeys returns the node private keys from keys that still match the
// public keys of tree.
func keepKeys(tree *Tree, keys map[treemath.NodeIndex]*cipher.HPKEPrivateKey) map[treemath.NodeIndex]*cipher.HPKEPrivateKey {
	out := make(map[treemath.NodeIndex]*cipher.HPKEPrivateKey, len(keys))
	for x, k := range keys {
		if nodePublicKey(tree, x) != nil && bytes.Equal(nodePublicKey(tree, x), k.PublicKey()) {
			out[x] = k
		}
	}
	return out
}

func nodePublicKey(t *Tree, x treemath.NodeIndex) []byte {
	n := t.Node(x)
	switch {
	case n == nil:
		return nil
	case n.Leaf != nil:
		return n.Leaf.EncryptionKey
	default:
		return n.Parent.EncryptionKey
	}
}

// applied lists the proposals of a commit as StagedCommit reports them.
func applied(list []storedProposal, byRef []bool) []AppliedProposal {
	out := make([]AppliedProposal, len(list))
	for i, sp := range list {
		out[i] = AppliedProposal{Proposal: sp.proposal, Sender: sp.sender}
		if byRef != nil && byRef[i] {
			out[i].Ref = sp.ref
		}
	}
	return out
}

// stageReceived validates a received, authenticated commit against every
// check of RFC 9420 section 12.4.2 and builds the state of the epoch it
// creates, changing nothing in g.
func (g *Group) stageReceived(wf WireFormat, c *FramedContent, auth *FramedContentAuthData, raw []byte) (*StagedCommit, error) {
	commit := c.Commit
	if c.Sender.Type == SenderNewMemberCommit && wf != WireFormatPublicMessage {
		return nil, fmt.Errorf("%w: external commit in a PrivateMessage", ErrWireFormat)
	}
	if len(auth.ConfirmationTag) == 0 {
		return nil, fmt.Errorf("%w: missing", ErrConfirmationTag)
	}
	list, byRef, err := g.resolveProposals(commit, c.Sender)
	if err != nil {
		return nil, err
	}
	s, err := g.applyProposals(list, c.Sender, byRef)
	if err != nil {
		return nil, err
	}
	if s.pathRequired && commit.Path == nil {
		return nil, ErrPathRequired
	}
	old := g.st
	committer := treemath.LeafIndex(c.Sender.Index)
	change, previous := LeafCommitted, old.tree.Leaf(committer)
	if c.Sender.Type == SenderNewMemberCommit {
		// The joiner takes the leftmost blank leaf, as an Add would; a
		// placeholder without a key stands there until the path is merged.
		ph := commit.Path.LeafNode
		ph.EncryptionKey = nil
		committer = s.tree.AddLeaf(&ph)
		// A Remove in an external commit resynchronises the joiner's old
		// leaf: the new leaf must be acceptable as its successor (RFC 9420
		// section 12.4.3.2), which the credential validator decides.
		change, previous = LeafExternalJoin, nil
		for _, sp := range list {
			if sp.proposal.Type == ProposalRemove {
				previous = old.tree.Leaf(treemath.LeafIndex(sp.proposal.Remove.Removed))
			}
		}
	}

	commitSecret := cipher.Secret(nil)
	defer func() { commitSecret.Zero() }()
	nodeKeys := old.nodeKeys
	if s.myUpdateRef != nil {
		// Another member committed this member's Update: its new leaf key
		// is the one kept when the proposal was sent.
		k, ok := g.updateKeys[string(s.myUpdateRef)]
		if !ok {
			return nil, fmt.Errorf("%w: commit applies an Update of this member's leaf it did not send", ErrInvalidProposal)
		}
		nodeKeys = maps.Clone(nodeKeys)
		nodeKeys[old.myLeaf.NodeIndex()] = k
	}
	if commit.Path != nil {
		path := commit.Path
		if err := VerifyLeafNode(g.suite, &path.LeafNode, LeafNodeSourceCommit, old.ctx.GroupID, uint32(committer), g.leafRules()); err != nil {
			return nil, fmt.Errorf("%w: committer's leaf: %w", ErrUpdatePath, err)
		}
		if err := g.validateCredential(CredentialCheck{Change: change, GroupID: old.ctx.GroupID, LeafIndex: uint32(committer), Leaf: &path.LeafNode, Previous: previous}); err != nil {
			return nil, err
		}
		if err := s.tree.ApplyUpdatePath(g.suite, committer, path, s.added); err != nil {
			return nil, err
		}
		if err := checkStagedLeaves(s, false, []treemath.LeafIndex{committer}); err != nil {
			return nil, err
		}
		if !s.removedMe {
			commitSecret, nodeKeys, err = g.receivePath(s, committer, path, &old.ctx, nodeKeys)
			if err != nil {
				return nil, err
			}
		}
	}
	sc := &StagedCommit{
		Committer: c.Sender, CommitterLeaf: uint32(committer), Proposals: applied(list, byRef),
		Epoch: old.ctx.Epoch, NewEpoch: old.ctx.Epoch + 1, Removed: s.removedMe, ReInit: s.reinit,
		AuthenticatedData: c.AuthenticatedData, WireFormat: wf, Message: raw, group: g, base: old,
	}
	if s.removedMe {
		return sc, nil
	}
	next, err := g.nextEpoch(s, wf, c, auth.Signature, commitSecret, nodeKeys, nil)
	if err != nil {
		return nil, err
	}
	if !next.keys.VerifyConfirmationTag(next.ctx.ConfirmedTranscriptHash, auth.ConfirmationTag) {
		next.keys.Drop()
		return nil, ErrConfirmationTag
	}
	if err := g.finishWithTag(next, auth.ConfirmationTag); err != nil {
		next.keys.Drop()
		return nil, err
	}
	sc.next = next
	return sc, nil
}

// receivePath decrypts the path secret meant for this member from a merged
// UpdatePath and returns the commit secret and the node keys of the new
// epoch.
func (g *Group) receivePath(s *staged, committer treemath.LeafIndex, path *UpdatePath, old *GroupContext, known map[treemath.NodeIndex]*cipher.HPKEPrivateKey) (cipher.Secret, map[treemath.NodeIndex]*cipher.HPKEPrivateKey, error) {
	treeHash, err := s.tree.TreeHash(g.suite)
	if err != nil {
		return nil, nil, err
	}
	prov := provisionalContext(old, s, treeHash)
	provBytes, err := ctxBytes(&prov)
	if err != nil {
		return nil, nil, err
	}
	// Keys still valid in the staged tree (the merge replaced the path).
	keys := keepKeys(s.tree, known)
	// The path ciphertexts were made against the tree before the merge,
	// whose resolutions differ from the staged tree's only on the direct
	// path, which LocatePathSecret never descends into.
	loc, err := s.tree.LocatePathSecret(committer, g.st.myLeaf, s.added, func(x treemath.NodeIndex) bool {
		_, ok := keys[x]
		return ok
	})
	if err != nil {
		return nil, nil, err
	}
	ps, err := DecryptPathSecret(g.suite, path, loc, keys[loc.KeyNode], provBytes)
	if err != nil {
		return nil, nil, err
	}
	// Derive each node's key once, checking it against the path's public
	// key and keeping it (PathSecretsFrom would derive them twice).
	fdp, _ := s.tree.FilteredDirectPath(committer)
	for i := loc.PathIndex; i < len(path.Nodes); i++ {
		if i > loc.PathIndex {
			next, err := NextPathSecret(g.suite, ps)
			ps.Zero()
			if err != nil {
				return nil, nil, err
			}
			ps = next
		}
		k, err := NodeKey(g.suite, ps)
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(k.PublicKey(), path.Nodes[i].EncryptionKey) {
			return nil, nil, fmt.Errorf("%w: path secret for node %d does not give its public key", ErrUpdatePath, i)
		}
		keys[fdp[i]] = k
	}
	commitSecret, err := NextPathSecret(g.suite, ps)
	ps.Zero()
	if err != nil {
		return nil, nil, err
	}
	return commitSecret, keys, nil
}

// nextEpoch derives the next epoch's state from staged proposals, the
// commit content and its commit secret.
func (g *Group) nextEpoch(s *staged, wf WireFormat, c *FramedContent, signature []byte, commitSecret cipher.Secret, nodeKeys map[treemath.NodeIndex]*cipher.HPKEPrivateKey, initOverride cipher.Secret) (*epochState, error) {
	old := g.st
	next := &epochState{tree: s.tree, ctx: s.ctx, myLeaf: old.myLeaf, nodeKeys: keepKeys(s.tree, nodeKeys)}
	var err error
	if next.ctx.TreeHash, err = s.tree.TreeHash(g.suite); err != nil {
		return nil, err
	}
	next.ctx.Epoch = old.ctx.Epoch + 1
	input, err := ConfirmedTranscriptHashInput(wf, c, signature)
	if err != nil {
		return nil, err
	}
	next.ctx.ConfirmedTranscriptHash = keyschedule.ConfirmedTranscriptHash(g.suite, old.interim, input)
	pskSecret, err := g.pskSecret(s.psks)
	if err != nil {
		return nil, err
	}
	defer cipher.Secret(pskSecret).Zero()
	enc, err := ctxBytes(&next.ctx)
	if err != nil {
		return nil, err
	}
	var initSecret cipher.Secret
	switch {
	case initOverride != nil:
		initSecret = initOverride
	case s.externalInit != nil:
		initSecret, err = old.keys.ExternalInitSecret(s.externalInit.KEMOutput)
		switch {
		case errors.Is(err, keyschedule.ErrDropped):
			return nil, err // our state, not the proposal, is at fault
		case err != nil:
			return nil, fmt.Errorf("%w: external init: %w", ErrInvalidProposal, err)
		}
		defer initSecret.Zero()
	default:
		initSecret = old.keys.InitSecret()
	}
	if initSecret == nil {
		return nil, fmt.Errorf("mls: no init secret for the next epoch")
	}
	if next.keys, err = keyschedule.Derive(g.suite, initSecret, commitSecret, pskSecret, enc); err != nil {
		return nil, err
	}
	return next, nil
}

// leave drops every secret of a group this member can no longer follow.
func (g *Group) leave(reason error) {
	g.inactive = reason
	g.st.drop()
	g.st.nodeKeys = nil
	for e, s := range g.resumption {
		s.Zero()
		delete(g.resumption, e)
	}
	for _, p := range g.past {
		p.drop()
	}
	g.past = nil
	if g.pending != nil {
		g.pending.discard()
	}
	g.proposals, g.pending = nil, nil
}

// CommitOptions chooses what a commit carries.
type CommitOptions struct {
	// Proposals are included by value, after every proposal stored this
	// epoch, which are included by reference.
	Proposals []Proposal
	// SkipStored leaves the stored proposals out.
	SkipStored bool
	// ForcePath adds an UpdatePath even when no proposal requires one.
	ForcePath bool
	// AuthenticatedData is sent in clear with the commit.
	AuthenticatedData []byte
	// ExternalPubInGroupInfo adds external_pub to the Welcome's GroupInfo.
	ExternalPubInGroupInfo bool
	// WireFormat frames this commit; zero means
	// GroupConfig.HandshakeWireFormat.
	WireFormat WireFormat
}

// CommitOutput is what Commit produces.
type CommitOutput struct {
	// Commit is the encoded MLSMessage carrying the Commit.
	Commit []byte
	// Welcome is the encoded MLSMessage Welcome for added members (nil
	// when nobody is added).
	Welcome []byte
	// RatchetTree is the new epoch's tree, for Welcomes sent without the
	// ratchet_tree extension.
	RatchetTree RatchetTree
	// NewEpoch is the epoch the commit creates.
	NewEpoch uint64
	// Staged is the commit, staged: the group's pending commit until it is
	// merged or discarded.
	Staged *StagedCommit
}

// Commit creates a Commit over the stored proposals (by reference) and
// opts.Proposals (by value), with an UpdatePath when required or
// requested, and a Welcome for added members. The group stays in its
// current epoch until the commit is merged (MergePendingCommit, or the
// commit coming back through ProcessMessage); a new Commit replaces an
// unmerged one.
func (g *Group) Commit(opts CommitOptions) (*CommitOutput, error) {
	if g.inactive != nil {
		return nil, g.inactive
	}
	wf, err := g.wireFormat(opts.WireFormat)
	if err != nil {
		return nil, err
	}
	old := g.st
	me := Sender{Type: SenderMember, Index: uint32(old.myLeaf)}
	var commit Commit
	var list []storedProposal
	var byRef []bool
	if !opts.SkipStored {
		for _, sp := range g.proposals {
			if sp.sender.Type == SenderMember && treemath.LeafIndex(sp.sender.Index) == old.myLeaf &&
				(sp.proposal.Type == ProposalUpdate || sp.proposal.Type == ProposalSelfRemove) {
				continue // a committer's own Update is replaced by its path; it cannot remove itself
			}
			if sp.proposal.Type == ProposalRemove && treemath.LeafIndex(sp.proposal.Remove.Removed) == old.myLeaf {
				continue // likewise: another member must commit this member's removal
			}
			commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefReference, Reference: sp.ref})
			list = append(list, sp)
			byRef = append(byRef, true)
		}
	}
	for i := range opts.Proposals {
		p := &opts.Proposals[i]
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefProposal, Proposal: p})
		list = append(list, storedProposal{proposal: p, sender: me})
		byRef = append(byRef, false)
	}
	s, err := g.applyProposals(list, me, nil)
	if err != nil {
		return nil, err
	}
	nodeKeys := old.nodeKeys
	var commitSecret cipher.Secret
	var upd *NewUpdatePath
	defer func() {
		// The path secrets and the commit secret are used up once the new
		// epoch and the Welcome exist (RFC 9420 section 9.2).
		if upd != nil {
			for _, ps := range upd.PathSecrets {
				ps.Zero()
			}
			upd.CommitSecret.Zero()
		}
	}()
	if s.pathRequired || opts.ForcePath {
		cur := old.tree.Leaf(old.myLeaf)
		leaf := LeafNode{SignatureKey: g.signer.PublicKey(), Credential: cur.Credential, Capabilities: cur.Capabilities, Extensions: cur.Extensions}
		upd, err = s.tree.CreateUpdatePath(g.suite, old.myLeaf, leaf, g.signer, old.ctx.GroupID, func(treeHash []byte) ([]byte, error) {
			prov := provisionalContext(&old.ctx, s, treeHash)
			return ctxBytes(&prov)
		}, s.added, g.cfg.Rand)
		if err != nil {
			return nil, err
		}
		commit.Path = upd.Path
		commitSecret = upd.CommitSecret
		nodeKeys = maps.Clone(keepKeys(s.tree, old.nodeKeys))
		nodeKeys[old.myLeaf.NodeIndex()] = upd.LeafKey
		fdp, _ := s.tree.FilteredDirectPath(old.myLeaf)
		for i, ps := range upd.PathSecrets {
			k, err := NodeKey(g.suite, ps)
			if err != nil {
				return nil, err
			}
			nodeKeys[fdp[i]] = k
		}
	}
	c := &FramedContent{
		GroupID: old.ctx.GroupID, Epoch: old.ctx.Epoch, Sender: me,
		AuthenticatedData: opts.AuthenticatedData, ContentType: ContentCommit, Commit: &commit,
	}
	sig, err := SignContent(g.suite, g.signer, wf, c, &old.ctx)
	if err != nil {
		return nil, err
	}
	next, err := g.nextEpoch(s, wf, c, sig, commitSecret, nodeKeys, nil)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*CommitOutput, error) {
		next.drop()
		return nil, err
	}
	tag, err := next.keys.ConfirmationTag(next.ctx.ConfirmedTranscriptHash)
	if err != nil {
		return fail(err)
	}
	if err := g.finishWithTag(next, tag); err != nil {
		return fail(err)
	}
	msg, err := g.frameSigned(wf, c, &FramedContentAuthData{Signature: sig, ConfirmationTag: tag})
	if err != nil {
		return fail(err)
	}
	out := &CommitOutput{RatchetTree: next.tree.RatchetTree(), NewEpoch: next.ctx.Epoch}
	if out.Commit, err = Marshal(msg); err != nil {
		return fail(err)
	}
	if len(s.added) > 0 {
		if out.Welcome, err = g.welcome(next, s, upd, opts.ExternalPubInGroupInfo); err != nil {
			return fail(err)
		}
	}
	if g.pending != nil {
		g.pending.discard()
	}
	g.pending = &StagedCommit{
		Committer: me, CommitterLeaf: uint32(old.myLeaf), Proposals: applied(list, byRef),
		Epoch: old.ctx.Epoch, NewEpoch: next.ctx.Epoch, Own: true, ReInit: s.reinit,
		AuthenticatedData: opts.AuthenticatedData, WireFormat: wf, Message: out.Commit,
		group: g, base: old, next: next,
	}
	out.Staged = g.pending
	return out, nil
}

// signedGroupInfo builds and signs the GroupInfo of state st.
func (g *Group) signedGroupInfo(st *epochState, withTree, withExternalPub bool) (*GroupInfo, error) {
	gi := &GroupInfo{GroupContext: st.ctx, ConfirmationTag: st.confirmationTag, Signer: uint32(st.myLeaf)}
	if withTree {
		ext, err := NewExtension(ExtRatchetTree, st.tree.RatchetTree())
		if err != nil {
			return nil, err
		}
		gi.Extensions = append(gi.Extensions, ext)
	}
	if withExternalPub {
		pub, err := st.keys.ExternalPub()
		if err != nil {
			return nil, err
		}
		ext, err := NewExtension(ExtExternalPub, &ExternalPub{PublicKey: pub})
		if err != nil {
			return nil, err
		}
		gi.Extensions = append(gi.Extensions, ext)
	}
	var err error
	if gi.Signature, err = g.suite.SignWithLabel(g.signer, LabelGroupInfoTBS, gi.TBS()); err != nil {
		return nil, err
	}
	return gi, nil
}

// GroupInfo returns the current epoch's signed GroupInfo as an encoded
// MLSMessage, with external_pub so that others can join by external
// commit, and the ratchet tree if withTree.
func (g *Group) GroupInfo(withTree bool) ([]byte, error) {
	if g.inactive != nil {
		return nil, g.inactive
	}
	gi, err := g.signedGroupInfo(g.st, withTree, true)
	if err != nil {
		return nil, err
	}
	return Marshal(&MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, GroupInfo: gi})
}

// welcome builds the Welcome for the members a commit adds (RFC 9420
// section 12.4.3.1).
func (g *Group) welcome(next *epochState, s *staged, upd *NewUpdatePath, withExternalPub bool) ([]byte, error) {
	gi, err := g.signedGroupInfo(next, g.cfg.RatchetTreeInWelcome, withExternalPub)
	if err != nil {
		return nil, err
	}
	giBytes, err := Marshal(gi)
	if err != nil {
		return nil, err
	}
	key, nonce, err := keyschedule.WelcomeKeyNonce(g.suite, next.keys.WelcomeSecret())
	if err != nil {
		return nil, err
	}
	defer key.Zero()
	egi, err := g.suite.AEADSeal(nil, key, nonce, nil, giBytes)
	if err != nil {
		return nil, err
	}
	wl := &Welcome{CipherSuite: next.ctx.CipherSuite, EncryptedGroupInfo: egi}
	var fdp []treemath.NodeIndex
	if upd != nil {
		fdp, _ = next.tree.FilteredDirectPath(next.myLeaf)
	}
	for i, l := range s.added {
		kp := s.addedKPs[i]
		gs := GroupSecrets{JoinerSecret: next.keys.JoinerSecret(), PSKs: s.psks}
		if upd != nil {
			anc := treemath.CommonAncestor(next.myLeaf.NodeIndex(), l.NodeIndex())
			for j, x := range fdp {
				if x == anc {
					gs.PathSecret = &PathSecret{PathSecret: upd.PathSecrets[j]}
				}
			}
		}
		gsBytes, err := Marshal(&gs)
		if err != nil {
			return nil, err
		}
		defer clear(gsBytes) // it holds the joiner secret and a path secret
		kpBytes, err := kp.Bytes()
		if err != nil {
			return nil, err
		}
		ref, err := g.suite.KeyPackageRef(kpBytes)
		if err != nil {
			return nil, err
		}
		kem, ct, err := g.suite.EncryptWithLabelFrom(g.cfg.Rand, kp.InitKey, LabelWelcome, egi, gsBytes)
		if err != nil {
			return nil, err
		}
		wl.Secrets = append(wl.Secrets, EncryptedGroupSecrets{NewMember: ref, EncryptedGroupSecrets: HPKECiphertext{KEMOutput: kem, Ciphertext: ct}})
	}
	return Marshal(&MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: wl})
}
