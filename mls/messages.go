package mls

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/secrettree"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// Processed is what ProcessMessage learned from one message.
type Processed struct {
	ContentType ContentType
	// Sender sent the message; for a commit, the committer.
	Sender Sender
	// Epoch is the epoch the message was sent in: a past epoch for a late
	// application message.
	Epoch             uint64
	AuthenticatedData []byte
	// ApplicationData is the plaintext of an application message.
	ApplicationData []byte
	// Proposal and ProposalRef describe a stored proposal.
	Proposal    *Proposal
	ProposalRef []byte
	// For a commit: the epoch entered, whether this member was removed, a
	// committed ReInit, whether the commit was this member's own, and the
	// proposals it applied.
	NewEpoch  uint64
	Removed   bool
	ReInit    *ReInit
	Own       bool
	Proposals []AppliedProposal
}

// ProcessMessage handles an encoded MLSMessage sent to the group: it
// decrypts and authenticates application data (of the current epoch or of
// one of the kept past epochs), stores a proposal for a later commit, or
// validates and applies a commit (RFC 9420 sections 6 and 12); a commit is
// StageCommit followed by MergeCommit. This member's own pending commit,
// coming back, is merged (Processed.Own); a copy of an own commit already
// merged gives ErrOwnCommitMerged, and other messages this member sent
// give ErrOwnMessage. On any error the group state is unchanged, byte for
// byte.
func (g *Group) ProcessMessage(raw []byte) (*Processed, error) {
	m, err := DecodeMLSMessage(raw)
	if err != nil {
		return nil, err
	}
	return g.process(m, raw)
}

// Process is ProcessMessage on a decoded message.
func (g *Group) Process(m *MLSMessage) (*Processed, error) {
	raw, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	return g.process(m, raw)
}

func (g *Group) process(m *MLSMessage, raw []byte) (*Processed, error) {
	r, err := g.receive(m, raw)
	if err != nil {
		return nil, err
	}
	if r.staged != nil {
		return g.MergeCommit(r.staged)
	}
	c := r.content
	out := &Processed{ContentType: c.ContentType, Sender: c.Sender, Epoch: c.Epoch, AuthenticatedData: c.AuthenticatedData}
	switch c.ContentType {
	case ContentApplication:
		out.ApplicationData = c.ApplicationData
	case ContentProposal:
		ref, err := g.storeProposal(r.wf, c, r.auth)
		if err != nil {
			r.discard()
			return nil, err
		}
		out.Proposal, out.ProposalRef = c.Proposal, ref
	}
	if r.attempt != nil {
		r.attempt.Commit()
	}
	return out, nil
}

// reception is an authenticated message not yet acted on: nothing of the
// group has changed, and the PrivateMessage key in attempt is not
// consumed yet.
type reception struct {
	wf      WireFormat
	content *FramedContent
	auth    *FramedContentAuthData
	attempt *secrettree.Attempt
	// staged is the validated commit of a commit message.
	staged *StagedCommit
}

// discard forgets a reception that will not be acted on.
func (r *reception) discard() {
	if r.attempt != nil {
		r.attempt.Discard()
	}
	if r.staged != nil && !r.staged.Own {
		r.staged.discard()
	}
}

// receive authenticates a group message and, for a commit, stages it. It
// changes nothing in the group.
func (g *Group) receive(m *MLSMessage, raw []byte) (*reception, error) {
	if g.inactive != nil {
		return nil, g.inactive
	}
	if m.Version != MLS10 {
		return nil, fmt.Errorf("%w: version %d", ErrWireFormat, m.Version)
	}
	if g.pending != nil && bytes.Equal(raw, g.pending.Message) {
		// This member's own commit, echoed back by the delivery service.
		return &reception{staged: g.pending}, nil
	}
	var r *reception
	var err error
	switch {
	case m.WireFormat == WireFormatPublicMessage && m.PublicMessage != nil:
		r, err = g.openPublic(m.PublicMessage, raw)
	case m.WireFormat == WireFormatPrivateMessage && m.PrivateMessage != nil:
		r, err = g.openPrivate(m.PrivateMessage, raw)
	default:
		return nil, fmt.Errorf("%w: %d is not a group message (or has no body)", ErrWireFormat, m.WireFormat)
	}
	if err != nil {
		return nil, err
	}
	if r.content.ContentType == ContentCommit {
		if r.staged, err = g.stageReceived(r.wf, r.content, r.auth, raw); err != nil {
			r.discard()
			return nil, err
		}
		r.staged.attempt, r.attempt = r.attempt, nil
	}
	return r, nil
}

// checkEpoch checks a message's group id and epoch. A message of another
// epoch is refused, except an application message of a kept past epoch
// (returned) and a copy of this member's own merged commit.
func (g *Group) checkEpoch(groupID []byte, epoch uint64, ct ContentType, raw []byte) (*pastEpoch, error) {
	if !bytes.Equal(groupID, g.st.ctx.GroupID) {
		return nil, ErrWrongGroup
	}
	if epoch == g.st.ctx.Epoch {
		return nil, nil
	}
	for _, p := range g.past {
		if p.ctx.Epoch != epoch {
			continue
		}
		if ct == ContentApplication {
			return p, nil
		}
		if ct == ContentCommit && p.ownCommit != nil {
			if d := sha256.Sum256(raw); bytes.Equal(d[:], p.ownCommit) {
				return nil, ErrOwnCommitMerged
			}
		}
	}
	return nil, fmt.Errorf("%w: message epoch %d, group epoch %d", ErrWrongEpoch, epoch, g.st.ctx.Epoch)
}

// signerKey returns the public signature key that must have signed
// content, checking that its sender may send that content type.
func (g *Group) signerKey(c *FramedContent) ([]byte, error) {
	switch c.Sender.Type {
	case SenderMember:
		ln := g.st.tree.Leaf(treemath.LeafIndex(c.Sender.Index))
		if c.Sender.Index >= g.st.tree.LeafCount() || ln == nil {
			return nil, fmt.Errorf("%w: leaf %d is not a member", ErrInvalidSender, c.Sender.Index)
		}
		return ln.SignatureKey, nil
	case SenderExternal:
		if c.ContentType != ContentProposal {
			return nil, fmt.Errorf("%w: external sender sent content type %d", ErrInvalidSender, c.ContentType)
		}
		switch c.Proposal.Type {
		case ProposalAdd, ProposalRemove, ProposalPSK, ProposalReInit, ProposalGroupContextExtensions:
		default:
			return nil, fmt.Errorf("%w: external sender proposed type 0x%04x", ErrInvalidSender, uint16(c.Proposal.Type))
		}
		senders, _, err := g.st.ctx.Extensions.ExternalSenders()
		if err != nil {
			return nil, err
		}
		if int64(c.Sender.Index) >= int64(len(senders)) {
			return nil, fmt.Errorf("%w: external sender %d unknown", ErrInvalidSender, c.Sender.Index)
		}
		return senders[c.Sender.Index].SignatureKey, nil
	case SenderNewMemberProposal:
		if c.ContentType != ContentProposal || c.Proposal.Type != ProposalAdd {
			return nil, fmt.Errorf("%w: new_member_proposal must carry an Add", ErrInvalidSender)
		}
		return c.Proposal.Add.KeyPackage.LeafNode.SignatureKey, nil
	case SenderNewMemberCommit:
		if c.ContentType != ContentCommit || c.Commit.Path == nil {
			return nil, fmt.Errorf("%w: new_member_commit must carry a commit with a path", ErrInvalidSender)
		}
		return c.Commit.Path.LeafNode.SignatureKey, nil
	}
	return nil, fmt.Errorf("%w: sender type %d", ErrInvalidSender, c.Sender.Type)
}

// openPublic authenticates a PublicMessage: group, epoch, membership tag
// for members, and the signature.
func (g *Group) openPublic(pm *PublicMessage, raw []byte) (*reception, error) {
	c := &pm.Content
	if c.ContentType == ContentApplication {
		return nil, fmt.Errorf("%w: application data in a PublicMessage", ErrWireFormat)
	}
	if _, err := g.checkEpoch(c.GroupID, c.Epoch, c.ContentType, raw); err != nil {
		return nil, err
	}
	if c.ContentType == ContentCommit && c.Sender.Type == SenderMember && treemath.LeafIndex(c.Sender.Index) == g.st.myLeaf {
		return nil, fmt.Errorf("%w: a commit from this member's leaf that is not its pending commit", ErrOwnMessage)
	}
	key, err := g.signerKey(c)
	if err != nil {
		return nil, err
	}
	if c.Sender.Type == SenderMember {
		if err := VerifyMembershipTag(g.suite, g.st.keys.MembershipKey(), pm, &g.st.ctx); err != nil {
			return nil, err
		}
	}
	if err := VerifyContentSignature(g.suite, key, WireFormatPublicMessage, c, pm.Auth.Signature, &g.st.ctx); err != nil {
		return nil, err
	}
	return &reception{wf: WireFormatPublicMessage, content: c, auth: &pm.Auth}, nil
}

// openPrivate decrypts and authenticates a PrivateMessage of the current
// epoch, or an application message of a kept past epoch, on a tentative
// ratchet.
func (g *Group) openPrivate(m *PrivateMessage, raw []byte) (*reception, error) {
	past, err := g.checkEpoch(m.GroupID, m.Epoch, m.ContentType, raw)
	if err != nil {
		return nil, err
	}
	ctx, sds, tree := &g.st.ctx, g.st.keys.SenderDataSecret(), g.st.secrets
	if past != nil {
		ctx, sds, tree = &past.ctx, past.senderData, past.secrets
	}
	sd, err := OpenSenderData(g.suite, sds, m, tree.LeafCount())
	if err != nil {
		return nil, err
	}
	if treemath.LeafIndex(sd.LeafIndex) == g.st.myLeaf && past == nil || past != nil && g.ownLeafIn(past, sd.LeafIndex) {
		// Its key was consumed when this member sent it.
		return nil, fmt.Errorf("%w: sent from this member's leaf %d", ErrOwnMessage, sd.LeafIndex)
	}
	c, auth, attempt, err := openContent(tree, m, sd)
	if err != nil {
		return nil, err
	}
	var key []byte
	if past != nil {
		if key = past.sigKeys[sd.LeafIndex]; key == nil {
			err = fmt.Errorf("%w: leaf %d was not a member in epoch %d", ErrInvalidSender, sd.LeafIndex, m.Epoch)
		}
	} else {
		key, err = g.signerKey(c)
	}
	if err == nil {
		err = VerifyContentSignature(g.suite, key, WireFormatPrivateMessage, c, auth.Signature, ctx)
	}
	if err != nil {
		attempt.Discard()
		return nil, err
	}
	return &reception{wf: WireFormatPrivateMessage, content: c, auth: auth, attempt: attempt}, nil
}

// ownLeafIn reports whether leaf was this member's in a past epoch: its
// signature key then was this member's.
func (g *Group) ownLeafIn(p *pastEpoch, leaf uint32) bool {
	return bytes.Equal(p.sigKeys[leaf], g.signer.PublicKey())
}

// storeProposal keeps a received proposal for the current epoch and
// returns its reference.
func (g *Group) storeProposal(wf WireFormat, c *FramedContent, auth *FramedContentAuthData) ([]byte, error) {
	ac := AuthenticatedContent{WireFormat: wf, Content: *c, Auth: *auth}
	enc, err := Marshal(&ac)
	if err != nil {
		return nil, err
	}
	ref, err := g.suite.ProposalRef(enc)
	if err != nil {
		return nil, err
	}
	if c.Proposal.Type == ProposalExternalInit {
		return nil, fmt.Errorf("%w: ExternalInit sent as a proposal", ErrInvalidProposal)
	}
	if c.Proposal.Type == ProposalUpdate && c.Sender.Type != SenderMember {
		return nil, fmt.Errorf("%w: Update from a non-member", ErrInvalidSender)
	}
	for _, sp := range g.proposals {
		if bytes.Equal(sp.ref, ref) {
			return ref, nil
		}
	}
	g.proposals = append(g.proposals, storedProposal{ref: ref, proposal: c.Proposal, sender: c.Sender})
	return ref, nil
}

// paddingFor returns how many zero bytes bring a plaintext of n bytes to
// a multiple of the configured block.
func (g *Group) paddingFor(n int) int {
	b := g.cfg.PaddingBlock
	if b <= 0 {
		return 0
	}
	return (b - n%b) % b
}

// frame signs content and wraps it in wire format wf.
func (g *Group) frame(wf WireFormat, c *FramedContent, confirmationTag []byte) (*MLSMessage, *FramedContentAuthData, error) {
	sig, err := SignContent(g.suite, g.signer, wf, c, &g.st.ctx)
	if err != nil {
		return nil, nil, err
	}
	auth := &FramedContentAuthData{Signature: sig, ConfirmationTag: confirmationTag}
	m, err := g.frameSigned(wf, c, auth)
	return m, auth, err
}

// frameSigned wraps already signed content in wire format wf.
func (g *Group) frameSigned(wf WireFormat, c *FramedContent, auth *FramedContentAuthData) (*MLSMessage, error) {
	switch wf {
	case WireFormatPublicMessage:
		pm := &PublicMessage{Content: *c, Auth: *auth}
		if c.Sender.Type == SenderMember {
			var err error
			if pm.MembershipTag, err = MembershipTag(g.suite, g.st.keys.MembershipKey(), pm, &g.st.ctx); err != nil {
				return nil, err
			}
		}
		return &MLSMessage{Version: MLS10, WireFormat: wf, PublicMessage: pm}, nil
	case WireFormatPrivateMessage:
		pc := PrivateMessageContent{ApplicationData: c.ApplicationData, Proposal: c.Proposal, Commit: c.Commit, Auth: *auth}
		n, err := privateContentLen(&pc, c.ContentType)
		if err != nil {
			return nil, err
		}
		pm, err := EncryptPrivateMessage(g.suite, g.st.secrets, g.st.keys.SenderDataSecret(), c, auth, g.paddingFor(n), g.cfg.Rand)
		if err != nil {
			return nil, err
		}
		return &MLSMessage{Version: MLS10, WireFormat: wf, PrivateMessage: pm}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrWireFormat, wf)
}

func privateContentLen(pc *PrivateMessageContent, ct ContentType) (int, error) {
	var w codec.Writer
	pc.EncodeTo(&w, ct)
	if err := w.Err(); err != nil {
		return 0, err
	}
	return w.Len(), nil
}

// Protect encrypts application data as a PrivateMessage from this member
// in the current epoch (RFC 9420 section 6.3) and returns the encoded
// MLSMessage.
func (g *Group) Protect(applicationData, authenticatedData []byte) ([]byte, error) {
	if g.inactive != nil {
		return nil, g.inactive
	}
	c := &FramedContent{
		GroupID: g.st.ctx.GroupID, Epoch: g.st.ctx.Epoch,
		Sender:            Sender{Type: SenderMember, Index: uint32(g.st.myLeaf)},
		AuthenticatedData: authenticatedData, ContentType: ContentApplication, ApplicationData: applicationData,
	}
	m, _, err := g.frame(WireFormatPrivateMessage, c, nil)
	if err != nil {
		return nil, err
	}
	return Marshal(m)
}

// Unprotect decrypts and authenticates an application message and returns
// its plaintext; other content is an error (use ProcessMessage).
func (g *Group) Unprotect(raw []byte) ([]byte, error) {
	m, err := DecodeMLSMessage(raw)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != WireFormatPrivateMessage || m.PrivateMessage.ContentType != ContentApplication {
		return nil, fmt.Errorf("%w: not an application PrivateMessage", ErrWireFormat)
	}
	p, err := g.process(m, raw)
	if err != nil {
		return nil, err
	}
	return p.ApplicationData, nil
}

// MessageOptions choose how one handshake message is sent.
type MessageOptions struct {
	// WireFormat frames the message: WireFormatPublicMessage or
	// WireFormatPrivateMessage; zero means GroupConfig.HandshakeWireFormat.
	// (MDK, for example, sends SelfRemove as a PublicMessage in groups
	// whose other handshakes are PrivateMessages.)
	WireFormat WireFormat
	// AuthenticatedData is sent in clear with the message.
	AuthenticatedData []byte
}

// wireFormat resolves a per-message choice against the group's default.
func (g *Group) wireFormat(wf WireFormat) (WireFormat, error) {
	if wf == 0 {
		return g.cfg.HandshakeWireFormat, nil
	}
	return wf, checkWireFormat(wf)
}

// Propose sends a proposal from this member and stores it so this
// member's next commit includes it by reference. It returns the encoded
// MLSMessage and the ProposalRef.
func (g *Group) Propose(p *Proposal, opts MessageOptions) (msg, ref []byte, err error) {
	if g.inactive != nil {
		return nil, nil, g.inactive
	}
	if p.Type == ProposalExternalInit {
		return nil, nil, fmt.Errorf("%w: ExternalInit is only sent inside an external commit", ErrInvalidProposal)
	}
	wf, err := g.wireFormat(opts.WireFormat)
	if err != nil {
		return nil, nil, err
	}
	c := &FramedContent{
		GroupID: g.st.ctx.GroupID, Epoch: g.st.ctx.Epoch,
		Sender:            Sender{Type: SenderMember, Index: uint32(g.st.myLeaf)},
		AuthenticatedData: opts.AuthenticatedData, ContentType: ContentProposal, Proposal: p,
	}
	m, auth, err := g.frame(wf, c, nil)
	if err != nil {
		return nil, nil, err
	}
	if ref, err = g.storeProposal(wf, c, auth); err != nil {
		return nil, nil, err
	}
	if msg, err = Marshal(m); err != nil {
		return nil, nil, err
	}
	return msg, ref, nil
}

// ProposeAdd proposes adding kp's owner.
func (g *Group) ProposeAdd(kp *KeyPackage) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}, MessageOptions{})
}

// ProposeRemove proposes removing the member at leaf.
func (g *Group) ProposeRemove(leaf uint32) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalRemove, Remove: &Remove{Removed: leaf}}, MessageOptions{})
}

// ProposeSelfRemove proposes this member's own removal (extensions draft,
// proposal 0x000a). Propose with MessageOptions chooses its wire format
// (MDK sends it as a PublicMessage in PrivateMessage groups).
func (g *Group) ProposeSelfRemove() (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalSelfRemove}, MessageOptions{})
}

// ProposeExternalPSK proposes injecting the registered external PSK id
// with a fresh nonce.
func (g *Group) ProposeExternalPSK(id []byte) (msg, ref []byte, err error) {
	if _, ok := g.externalPSKs[string(id)]; !ok {
		return nil, nil, fmt.Errorf("%w: %x", ErrUnknownPSK, id)
	}
	nonce, err := randomSecret(g.cfg.Rand, g.suite.Nh())
	if err != nil {
		return nil, nil, err
	}
	return g.Propose(&Proposal{Type: ProposalPSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{Type: PSKExternal, PSKID: id, PSKNonce: nonce}}}, MessageOptions{})
}

// ProposeGroupContextExtensions proposes replacing the GroupContext
// extensions.
func (g *Group) ProposeGroupContextExtensions(ext Extensions) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: ext}}, MessageOptions{})
}

// ProposeAppDataUpdate proposes an app_data_dictionary change (extensions
// draft, proposal 0x0008).
func (g *Group) ProposeAppDataUpdate(u AppDataUpdate) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalAppDataUpdate, AppDataUpdate: &u}, MessageOptions{})
}

// ProposeReInit proposes re-initializing the group.
func (g *Group) ProposeReInit(r ReInit) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalReInit, ReInit: &r}, MessageOptions{})
}

// ProposeUpdate proposes a fresh encryption key for this member's leaf;
// the private key is kept until a commit applies the proposal.
func (g *Group) ProposeUpdate() (msg, ref []byte, err error) {
	if g.inactive != nil {
		return nil, nil, g.inactive
	}
	key, err := g.suite.GenerateHPKEKeyFrom(g.cfg.Rand)
	if err != nil {
		return nil, nil, err
	}
	cur := g.st.tree.Leaf(g.st.myLeaf)
	ln := LeafNode{
		EncryptionKey: key.PublicKey(), SignatureKey: cur.SignatureKey, Credential: cur.Credential,
		Capabilities: cur.Capabilities, Source: LeafNodeSourceUpdate, Extensions: cur.Extensions,
	}
	if err := ln.Sign(g.suite, g.signer, g.st.ctx.GroupID, uint32(g.st.myLeaf)); err != nil {
		return nil, nil, err
	}
	msg, ref, err = g.Propose(&Proposal{Type: ProposalUpdate, Update: &Update{LeafNode: ln}}, MessageOptions{})
	if err != nil {
		return nil, nil, err
	}
	g.updateKeys[string(ref)] = key
	return msg, ref, nil
}
