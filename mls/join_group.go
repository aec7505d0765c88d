package mls

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// PSKEntry is a pre-shared key a joiner holds: an external PSK by id, or a
// resumption PSK of another group's epoch (for branch and re-init).
type PSKEntry struct {
	// ID is the psk_id of an external PSK (nil for a resumption PSK).
	ID []byte
	// GroupID and Epoch name a resumption PSK.
	GroupID []byte
	Epoch   uint64
	Secret  []byte
}

// JoinOptions are the inputs of a join besides the Welcome or GroupInfo.
type JoinOptions struct {
	// RatchetTree is the tree when it travels out of band; nil means the
	// GroupInfo's ratchet_tree extension must carry it.
	RatchetTree RatchetTree
	// PSKs are the pre-shared keys the Welcome may name.
	PSKs []PSKEntry
}

// joinerPSKSecret resolves the PSKs a Welcome names from opts.
func joinerPSKSecret(suite *cipher.Suite, ids []PreSharedKeyID, opts *JoinOptions) ([]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	psks := make([]keyschedule.PSK, len(ids))
	for i := range ids {
		id := &ids[i]
		enc, err := Marshal(id)
		if err != nil {
			return nil, err
		}
		psks[i].ID = enc
		for _, e := range opts.PSKs {
			if (id.Type == PSKExternal && e.ID != nil && bytes.Equal(e.ID, id.PSKID)) ||
				(id.Type == PSKResumption && e.ID == nil && bytes.Equal(e.GroupID, id.PSKGroupID) && e.Epoch == id.PSKEpoch) {
				psks[i].Secret = e.Secret
				break
			}
		}
		if psks[i].Secret == nil {
			return nil, fmt.Errorf("%w: type %d", ErrUnknownPSK, id.Type)
		}
	}
	return keyschedule.PSKSecret(suite, psks)
}

// checkedTree builds the group's tree from the GroupInfo or opts, checks
// the GroupInfo's signature with its signer's leaf and runs the joiner's
// integrity checks (RFC 9420 section 12.4.3.1), then has the credential
// validator accept every leaf.
//
// Lifetimes: a leaf's not_before must not be after its not_after, but the
// current time is not checked against the lifetimes of the tree's
// key_package leaves. RFC 9420 section 7.3 only recommends that check for
// received leaves, and a member who joined long ago and never updated
// would otherwise make the group unjoinable.
func checkedTree(suite *cipher.Suite, gi *GroupInfo, rt RatchetTree, validate CredentialValidator) (*Tree, error) {
	if t, dup := gi.Extensions.Duplicate(); dup {
		return nil, fmt.Errorf("%w: extension 0x%04x twice", ErrInvalidGroupInfo, uint16(t))
	}
	if err := checkGroupExtensions(gi.GroupContext.Extensions); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	if rt == nil {
		var found bool
		var err error
		if rt, found, err = gi.Extensions.RatchetTree(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
		} else if !found {
			return nil, fmt.Errorf("%w: no ratchet tree given or in the GroupInfo", ErrInvalidGroupInfo)
		}
	}
	tree, err := NewTree(rt)
	if err != nil {
		return nil, err
	}
	tree.cacheHashes()
	signer := tree.Leaf(treemath.LeafIndex(gi.Signer))
	if gi.Signer >= tree.LeafCount() || signer == nil {
		return nil, fmt.Errorf("%w: signer %d is not a member", ErrInvalidGroupInfo, gi.Signer)
	}
	if err := VerifyGroupInfoSignature(suite, gi, signer.SignatureKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	if err := tree.VerifyIntegrity(suite, &gi.GroupContext, LeafNodeRules{}); err != nil {
		return nil, err
	}
	for l := uint32(0); l < tree.LeafCount(); l++ {
		if ln := tree.Leaf(treemath.LeafIndex(l)); ln != nil {
			if err := runValidator(validate, CredentialCheck{Change: LeafInTree, GroupID: gi.GroupContext.GroupID, LeafIndex: l, Leaf: ln}); err != nil {
				return nil, err
			}
		}
	}
	if err := tree.detach(); err != nil {
		return nil, err
	}
	return tree, nil
}

// detach gives every node its own copy of its bytes, so that the tree no
// longer aliases the buffer it was decoded from (the GroupInfo of a
// Welcome, a caller's ratchet tree): the buffer is freed after the join,
// and a node replaced by a later commit frees its own memory. The cached
// hashes stay valid: the copies encode to the same bytes. The nodes are
// copied on all CPUs, as the leaves are verified.
func (t *Tree) detach() error {
	workers := min(runtime.GOMAXPROCS(0), len(t.nodes)/64+1)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for x := w; x < len(t.nodes); x += workers {
				if n := t.nodes[x]; n != nil {
					c, err := copyOf[Node](n)
					if err != nil {
						errs[w] = err
						return
					}
					t.nodes[x] = c
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// copyOf returns a copy of v decoded from a fresh encoding: it aliases
// nothing v aliases.
func copyOf[T any, PT interface {
	*T
	Decoder
	Encoder
}](v PT) (*T, error) {
	enc, err := Marshal(v)
	if err != nil {
		return nil, err
	}
	b := make([]byte, len(enc)) // exactly sized: the copy is what stays alive
	copy(b, enc)
	c := PT(new(T))
	if err := Unmarshal(b, c); err != nil {
		return nil, err
	}
	return (*T)(c), nil
}

// JoinFromWelcome joins a group from a Welcome addressed to kp (RFC 9420
// section 12.4.3.1): it opens the GroupSecrets and GroupInfo, validates
// the tree fully, locates this member's leaf, derives the path secrets it
// was given, and checks the confirmation tag.
func JoinFromWelcome(welcome []byte, kp *KeyPackage, priv *KeyPackagePrivate, signer *cipher.SignatureKey, opts JoinOptions, cfg GroupConfig) (*Group, error) {
	m, err := DecodeMLSMessage(welcome)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != WireFormatWelcome {
		return nil, fmt.Errorf("%w: wire format %d, want Welcome", ErrWireFormat, m.WireFormat)
	}
	wl := m.Welcome
	if wl.CipherSuite != kp.CipherSuite {
		return nil, fmt.Errorf("%w: Welcome suite 0x%04x, KeyPackage suite 0x%04x", ErrInvalidGroupInfo, uint16(wl.CipherSuite), uint16(kp.CipherSuite))
	}
	suite, err := newSuite(wl.CipherSuite)
	if err != nil {
		return nil, err
	}
	kpBytes, err := kp.Bytes()
	if err != nil {
		return nil, err
	}
	ref, err := suite.KeyPackageRef(kpBytes)
	if err != nil {
		return nil, err
	}
	egs, err := wl.FindSecrets(ref)
	if err != nil {
		return nil, err
	}
	gs, err := DecryptGroupSecrets(suite, egs, priv.InitKey, wl.EncryptedGroupInfo)
	if err != nil {
		return nil, err
	}
	defer gs.zero()
	pskSecret, err := joinerPSKSecret(suite, gs.PSKs, &opts)
	if err != nil {
		return nil, err
	}
	defer cipher.Secret(pskSecret).Zero()
	welcomeSecret, err := keyschedule.WelcomeSecret(suite, gs.JoinerSecret, pskSecret)
	if err != nil {
		return nil, err
	}
	defer welcomeSecret.Zero()
	gi, err := DecryptGroupInfo(suite, welcomeSecret, wl.EncryptedGroupInfo)
	if err != nil {
		return nil, err
	}
	if gi.GroupContext.CipherSuite != wl.CipherSuite || gi.GroupContext.Version != MLS10 {
		return nil, fmt.Errorf("%w: GroupContext suite or version differs", ErrInvalidGroupInfo)
	}
	tree, err := checkedTree(suite, gi, opts.RatchetTree, cfg.CredentialValidator)
	if err != nil {
		return nil, err
	}
	me := treemath.LeafIndex(math.MaxUint32)
	for l := uint32(0); l < tree.LeafCount(); l++ {
		if ln := tree.Leaf(treemath.LeafIndex(l)); ln != nil && bytes.Equal(ln.EncryptionKey, kp.LeafNode.EncryptionKey) && bytes.Equal(ln.SignatureKey, kp.LeafNode.SignatureKey) {
			me = treemath.LeafIndex(l)
			break
		}
	}
	if me == treemath.LeafIndex(math.MaxUint32) {
		return nil, fmt.Errorf("%w: the KeyPackage's leaf is not in the tree", ErrInvalidGroupInfo)
	}
	g, err := newGroup(cfg, suite, signer)
	if err != nil {
		return nil, err
	}
	for _, p := range opts.PSKs {
		if p.ID != nil {
			g.AddExternalPSK(p.ID, p.Secret)
		}
	}
	nodeKeys := map[treemath.NodeIndex]*cipher.HPKEPrivateKey{me.NodeIndex(): priv.EncryptionKey}
	if gs.PathSecret != nil {
		signerLeaf := treemath.LeafIndex(gi.Signer)
		anc := treemath.CommonAncestor(me.NodeIndex(), signerLeaf.NodeIndex())
		fdp, _ := tree.FilteredDirectPath(signerLeaf)
		start := -1
		for i, x := range fdp {
			if x == anc {
				start = i
			}
		}
		if start < 0 {
			return nil, fmt.Errorf("%w: path secret for a node off the signer's path", ErrInvalidGroupInfo)
		}
		ps := cipher.Secret(gs.PathSecret.PathSecret).Clone()
		defer func() { ps.Zero() }()
		for i := start; i < len(fdp); i++ {
			if i > start {
				next, err := NextPathSecret(suite, ps)
				ps.Zero()
				if err != nil {
					return nil, err
				}
				ps = next
			}
			k, err := NodeKey(suite, ps)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(k.PublicKey(), nodePublicKey(tree, fdp[i])) {
				return nil, fmt.Errorf("%w: path secret does not give node %d's key", ErrInvalidGroupInfo, fdp[i])
			}
			nodeKeys[fdp[i]] = k
		}
	}
	ctxEnc, err := ctxBytes(&gi.GroupContext)
	if err != nil {
		return nil, err
	}
	keys, err := keyschedule.FromJoiner(suite, gs.JoinerSecret, pskSecret, ctxEnc)
	if err != nil {
		return nil, err
	}
	if !keys.VerifyConfirmationTag(gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag) {
		keys.Drop()
		return nil, ErrConfirmationTag
	}
	ctx, err := copyOf(&gi.GroupContext) // not to keep the GroupInfo's buffer
	if err != nil {
		keys.Drop()
		return nil, err
	}
	st := &epochState{ctx: *ctx, tree: tree, keys: keys, myLeaf: me, nodeKeys: nodeKeys}
	if err := g.finishWithTag(st, bytes.Clone(gi.ConfirmationTag)); err != nil {
		keys.Drop()
		return nil, err
	}
	g.install(st, nil)
	return g, nil
}

// ExternalJoinOptions are the choices of an external joiner.
type ExternalJoinOptions struct {
	JoinOptions
	// RemoveLeaf, when set, removes this client's previous leaf in the same
	// commit (resynchronisation, RFC 9420 section 12.4.3.2).
	RemoveLeaf *uint32
	// AuthenticatedData is sent in clear with the commit.
	AuthenticatedData []byte
}

// JoinExternal joins a group by external commit (RFC 9420 section
// 12.4.3.2) from its GroupInfo, which must carry external_pub. It returns
// the new member's group, already in the new epoch, and the encoded
// commit to send to the group.
func JoinExternal(groupInfo []byte, signer *cipher.SignatureKey, leaf LeafParams, opts ExternalJoinOptions, cfg GroupConfig) (*Group, []byte, error) {
	m, err := DecodeMLSMessage(groupInfo)
	if err != nil {
		return nil, nil, err
	}
	if m.WireFormat != WireFormatGroupInfo {
		return nil, nil, fmt.Errorf("%w: wire format %d, want GroupInfo", ErrWireFormat, m.WireFormat)
	}
	gi := m.GroupInfo
	cs := gi.GroupContext.CipherSuite
	suite, err := newSuite(cs)
	if err != nil {
		return nil, nil, err
	}
	tree, err := checkedTree(suite, gi, opts.RatchetTree, cfg.CredentialValidator)
	if err != nil {
		return nil, nil, err
	}
	ep, found, err := gi.Extensions.ExternalPub()
	if err != nil || !found {
		return nil, nil, fmt.Errorf("%w: no usable external_pub (%v)", ErrInvalidGroupInfo, err)
	}
	g, err := newGroup(cfg, suite, signer)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range opts.PSKs {
		if p.ID != nil {
			g.AddExternalPSK(p.ID, p.Secret)
		}
	}
	interim, err := keyschedule.InterimTranscriptHash(suite, gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag)
	if err != nil {
		return nil, nil, err
	}
	ctx, err := copyOf(&gi.GroupContext) // not to keep the GroupInfo's buffer
	if err != nil {
		return nil, nil, err
	}
	g.st = &epochState{ctx: *ctx, tree: tree, interim: interim, myLeaf: treemath.LeafIndex(math.MaxUint32)}
	kem, initSecret, err := keyschedule.NewExternalInit(suite, ep.PublicKey, g.cfg.Rand)
	if errors.Is(err, cipher.ErrInvalidKey) {
		return nil, nil, fmt.Errorf("%w: external_pub: %w", ErrInvalidGroupInfo, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mls: external init: %w", err)
	}
	defer initSecret.Zero()
	commit := Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefProposal, Proposal: &Proposal{Type: ProposalExternalInit, ExternalInit: &ExternalInit{KEMOutput: kem}}}}}
	if opts.RemoveLeaf != nil {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefProposal, Proposal: &Proposal{Type: ProposalRemove, Remove: &Remove{Removed: *opts.RemoveLeaf}}})
	}
	me := Sender{Type: SenderNewMemberCommit}
	list := make([]storedProposal, len(commit.Proposals))
	for i := range commit.Proposals {
		list[i] = storedProposal{proposal: commit.Proposals[i].Proposal, sender: me}
	}
	s, err := g.applyProposals(list, me, nil)
	if err != nil {
		return nil, nil, err
	}
	leaf = leaf.withDefaults(cs)
	ph := &LeafNode{SignatureKey: signer.PublicKey(), Credential: leaf.Credential, Capabilities: leaf.Capabilities, Source: LeafNodeSourceUpdate, Extensions: leaf.Extensions}
	myLeaf := s.tree.AddLeaf(ph)
	content := LeafNode{SignatureKey: signer.PublicKey(), Credential: leaf.Credential, Capabilities: leaf.Capabilities, Extensions: leaf.Extensions}
	old := g.st
	upd, err := s.tree.CreateUpdatePath(suite, myLeaf, content, signer, old.ctx.GroupID, func(treeHash []byte) ([]byte, error) {
		prov := provisionalContext(&old.ctx, s, treeHash)
		return ctxBytes(&prov)
	}, nil, g.cfg.Rand)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, ps := range upd.PathSecrets {
			ps.Zero()
		}
		upd.CommitSecret.Zero()
	}()
	commit.Path = upd.Path
	if err := checkStagedLeaves(s, false, []treemath.LeafIndex{myLeaf}); err != nil {
		return nil, nil, err
	}
	nodeKeys := map[treemath.NodeIndex]*cipher.HPKEPrivateKey{myLeaf.NodeIndex(): upd.LeafKey}
	fdp, _ := s.tree.FilteredDirectPath(myLeaf)
	for i, ps := range upd.PathSecrets {
		k, err := NodeKey(suite, ps)
		if err != nil {
			return nil, nil, err
		}
		nodeKeys[fdp[i]] = k
	}
	c := &FramedContent{GroupID: old.ctx.GroupID, Epoch: old.ctx.Epoch, Sender: me, AuthenticatedData: opts.AuthenticatedData, ContentType: ContentCommit, Commit: &commit}
	sig, err := SignContent(suite, signer, WireFormatPublicMessage, c, &old.ctx)
	if err != nil {
		return nil, nil, err
	}
	next, err := g.nextEpoch(s, WireFormatPublicMessage, c, sig, upd.CommitSecret, nodeKeys, initSecret)
	if err != nil {
		return nil, nil, err
	}
	next.myLeaf = myLeaf
	next.nodeKeys = nodeKeys
	tag, err := next.keys.ConfirmationTag(next.ctx.ConfirmedTranscriptHash)
	if err != nil {
		return nil, nil, err
	}
	if err := g.finishWithTag(next, tag); err != nil {
		return nil, nil, err
	}
	msg, err := Marshal(&MLSMessage{Version: MLS10, WireFormat: WireFormatPublicMessage, PublicMessage: &PublicMessage{Content: *c, Auth: FramedContentAuthData{Signature: sig, ConfirmationTag: tag}}})
	if err != nil {
		return nil, nil, err
	}
	g.install(next, nil)
	return g, msg, nil
}
