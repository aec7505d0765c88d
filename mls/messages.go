package mls

import (
	"bytes"
	"fmt"

	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// Processed is what ProcessMessage learned from one message.
type Processed struct {
	ContentType       ContentType
	Sender            Sender
	AuthenticatedData []byte
	// ApplicationData is the plaintext of an application message.
	ApplicationData []byte
	// Proposal and ProposalRef describe a stored proposal.
	Proposal    *Proposal
	ProposalRef []byte
	// For a commit: the epoch entered, whether this member was removed,
	// and a committed ReInit.
	NewEpoch uint64
	Removed  bool
	ReInit   *ReInit
}

// ProcessMessage handles an encoded MLSMessage sent to the group: it
// decrypts and authenticates application data, stores a proposal for a
// later commit, or validates and applies a commit (RFC 9420 sections 6
// and 12). On any error the group state is unchanged.
func (g *Group) ProcessMessage(raw []byte) (*Processed, error) {
	m, err := DecodeMLSMessage(raw)
	if err != nil {
		return nil, err
	}
	return g.Process(m)
}

// Process is ProcessMessage on a decoded message.
func (g *Group) Process(m *MLSMessage) (*Processed, error) {
	if g.inactive != nil {
		return nil, g.inactive
	}
	if m.Version != MLS10 {
		return nil, fmt.Errorf("%w: version %d", ErrWireFormat, m.Version)
	}
	var (
		wf      WireFormat
		content *FramedContent
		auth    *FramedContentAuthData
		err     error
	)
	switch {
	case m.WireFormat == WireFormatPublicMessage && m.PublicMessage != nil:
		wf = WireFormatPublicMessage
		content, auth, err = g.openPublic(m.PublicMessage)
	case m.WireFormat == WireFormatPrivateMessage && m.PrivateMessage != nil:
		wf = WireFormatPrivateMessage
		content, auth, err = g.openPrivate(m.PrivateMessage)
	default:
		return nil, fmt.Errorf("%w: %d is not a group message (or has no body)", ErrWireFormat, m.WireFormat)
	}
	if err != nil {
		return nil, err
	}
	out := &Processed{ContentType: content.ContentType, Sender: content.Sender, AuthenticatedData: content.AuthenticatedData}
	switch content.ContentType {
	case ContentApplication:
		out.ApplicationData = content.ApplicationData
	case ContentProposal:
		ref, err := g.storeProposal(wf, content, auth)
		if err != nil {
			return nil, err
		}
		out.Proposal, out.ProposalRef = content.Proposal, ref
	case ContentCommit:
		if err := g.processCommit(wf, content, auth, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkGroupEpoch checks a message's group id and epoch.
func (g *Group) checkGroupEpoch(groupID []byte, epoch uint64) error {
	if !bytes.Equal(groupID, g.st.ctx.GroupID) {
		return ErrWrongGroup
	}
	if epoch != g.st.ctx.Epoch {
		return fmt.Errorf("%w: message epoch %d, group epoch %d", ErrWrongEpoch, epoch, g.st.ctx.Epoch)
	}
	return nil
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
func (g *Group) openPublic(pm *PublicMessage) (*FramedContent, *FramedContentAuthData, error) {
	c := &pm.Content
	if err := g.checkGroupEpoch(c.GroupID, c.Epoch); err != nil {
		return nil, nil, err
	}
	if c.ContentType == ContentApplication {
		return nil, nil, fmt.Errorf("%w: application data in a PublicMessage", ErrWireFormat)
	}
	key, err := g.signerKey(c)
	if err != nil {
		return nil, nil, err
	}
	if c.Sender.Type == SenderMember {
		if err := VerifyMembershipTag(g.suite, g.st.keys.MembershipKey(), pm, &g.st.ctx); err != nil {
			return nil, nil, err
		}
	}
	if err := VerifyContentSignature(g.suite, key, WireFormatPublicMessage, c, pm.Auth.Signature, &g.st.ctx); err != nil {
		return nil, nil, err
	}
	return c, &pm.Auth, nil
}

// openPrivate decrypts and authenticates a PrivateMessage.
func (g *Group) openPrivate(m *PrivateMessage) (*FramedContent, *FramedContentAuthData, error) {
	if err := g.checkGroupEpoch(m.GroupID, m.Epoch); err != nil {
		return nil, nil, err
	}
	c, auth, err := DecryptPrivateMessage(g.suite, g.st.secrets, g.st.keys.SenderDataSecret(), m)
	if err != nil {
		return nil, nil, err
	}
	key, err := g.signerKey(c)
	if err != nil {
		return nil, nil, err
	}
	if err := VerifyContentSignature(g.suite, key, WireFormatPrivateMessage, c, auth.Signature, &g.st.ctx); err != nil {
		return nil, nil, err
	}
	return c, auth, nil
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

// frame signs content and wraps it in the configured (or given) wire
// format, returning the encoded MLSMessage.
func (g *Group) frame(wf WireFormat, c *FramedContent, confirmationTag []byte) (*MLSMessage, *FramedContentAuthData, error) {
	sig, err := SignContent(g.suite, g.signer, wf, c, &g.st.ctx)
	if err != nil {
		return nil, nil, err
	}
	auth := &FramedContentAuthData{Signature: sig, ConfirmationTag: confirmationTag}
	switch wf {
	case WireFormatPublicMessage:
		pm := &PublicMessage{Content: *c, Auth: *auth}
		if c.Sender.Type == SenderMember {
			if pm.MembershipTag, err = MembershipTag(g.suite, g.st.keys.MembershipKey(), pm, &g.st.ctx); err != nil {
				return nil, nil, err
			}
		}
		return &MLSMessage{Version: MLS10, WireFormat: wf, PublicMessage: pm}, auth, nil
	case WireFormatPrivateMessage:
		pc := PrivateMessageContent{ApplicationData: c.ApplicationData, Proposal: c.Proposal, Commit: c.Commit, Auth: *auth}
		n, err := privateContentLen(&pc, c.ContentType)
		if err != nil {
			return nil, nil, err
		}
		pm, err := EncryptPrivateMessage(g.suite, g.st.secrets, g.st.keys.SenderDataSecret(), c, auth, g.paddingFor(n))
		if err != nil {
			return nil, nil, err
		}
		return &MLSMessage{Version: MLS10, WireFormat: wf, PrivateMessage: pm}, auth, nil
	}
	return nil, nil, fmt.Errorf("%w: %d", ErrWireFormat, wf)
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
	p, err := g.Process(m)
	if err != nil {
		return nil, err
	}
	return p.ApplicationData, nil
}

// Propose sends a proposal from this member in the configured handshake
// wire format and stores it so this member's next commit includes it by
// reference. It returns the encoded MLSMessage and the ProposalRef.
func (g *Group) Propose(p *Proposal, authenticatedData []byte) (msg, ref []byte, err error) {
	if g.inactive != nil {
		return nil, nil, g.inactive
	}
	if p.Type == ProposalExternalInit {
		return nil, nil, fmt.Errorf("%w: ExternalInit is only sent inside an external commit", ErrInvalidProposal)
	}
	c := &FramedContent{
		GroupID: g.st.ctx.GroupID, Epoch: g.st.ctx.Epoch,
		Sender:            Sender{Type: SenderMember, Index: uint32(g.st.myLeaf)},
		AuthenticatedData: authenticatedData, ContentType: ContentProposal, Proposal: p,
	}
	m, auth, err := g.frame(g.cfg.HandshakeWireFormat, c, nil)
	if err != nil {
		return nil, nil, err
	}
	if ref, err = g.storeProposal(g.cfg.HandshakeWireFormat, c, auth); err != nil {
		return nil, nil, err
	}
	if msg, err = Marshal(m); err != nil {
		return nil, nil, err
	}
	return msg, ref, nil
}

// ProposeAdd proposes adding kp's owner.
func (g *Group) ProposeAdd(kp *KeyPackage) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalAdd, Add: &Add{KeyPackage: *kp}}, nil)
}

// ProposeRemove proposes removing the member at leaf.
func (g *Group) ProposeRemove(leaf uint32) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalRemove, Remove: &Remove{Removed: leaf}}, nil)
}

// ProposeSelfRemove proposes this member's own removal (extensions draft,
// proposal 0x000a).
func (g *Group) ProposeSelfRemove() (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalSelfRemove}, nil)
}

// ProposeExternalPSK proposes injecting the registered external PSK id
// with a fresh nonce.
func (g *Group) ProposeExternalPSK(id []byte) (msg, ref []byte, err error) {
	if _, ok := g.externalPSKs[string(id)]; !ok {
		return nil, nil, fmt.Errorf("%w: %x", ErrUnknownPSK, id)
	}
	nonce, err := g.randomNonce()
	if err != nil {
		return nil, nil, err
	}
	return g.Propose(&Proposal{Type: ProposalPSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{Type: PSKExternal, PSKID: id, PSKNonce: nonce}}}, nil)
}

// ProposeGroupContextExtensions proposes replacing the GroupContext
// extensions.
func (g *Group) ProposeGroupContextExtensions(ext Extensions) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: ext}}, nil)
}

// ProposeAppDataUpdate proposes an app_data_dictionary change (extensions
// draft, proposal 0x0008).
func (g *Group) ProposeAppDataUpdate(u AppDataUpdate) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalAppDataUpdate, AppDataUpdate: &u}, nil)
}

// ProposeReInit proposes re-initializing the group.
func (g *Group) ProposeReInit(r ReInit) (msg, ref []byte, err error) {
	return g.Propose(&Proposal{Type: ProposalReInit, ReInit: &r}, nil)
}

// ProposeUpdate proposes a fresh encryption key for this member's leaf;
// the private key is kept until a commit applies the proposal.
func (g *Group) ProposeUpdate() (msg, ref []byte, err error) {
	if g.inactive != nil {
		return nil, nil, g.inactive
	}
	key, err := g.suite.GenerateHPKEKey()
	if err != nil {
		return nil, nil, err
	}
	cur := g.st.tree.Leaf(g.st.myLeaf)
	ln := LeafNode{
		EncryptionKey: key.PublicKey(), SignatureKey: cur.SignatureKey, Credential: cur.Credential,
		Capabilities: cur.Capabilities, Source: LeafNodeSourceUpdate, Extensions: cur.Extensions,
	}
	if ln.Signature, err = g.suite.SignWithLabel(g.signer, LabelLeafNodeTBS, ln.TBS(g.st.ctx.GroupID, uint32(g.st.myLeaf))); err != nil {
		return nil, nil, err
	}
	msg, ref, err = g.Propose(&Proposal{Type: ProposalUpdate, Update: &Update{LeafNode: ln}}, nil)
	if err != nil {
		return nil, nil, err
	}
	g.updateKeys[string(ref)] = key
	return msg, ref, nil
}
