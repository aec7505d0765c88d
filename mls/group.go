package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/secrettree"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// Errors reported by the group state machine; match with errors.Is.
var (
	// ErrWrongGroup means a message names another group.
	ErrWrongGroup = errors.New("mls: message for another group")
	// ErrWrongEpoch means a message was sent in an epoch other than the
	// group's current one (old epochs' secrets are deleted).
	ErrWrongEpoch = errors.New("mls: message for another epoch")
	// ErrInvalidProposal means a proposal breaks a rule of RFC 9420 section
	// 12.1 (or of the extensions draft for SelfRemove and AppDataUpdate).
	ErrInvalidProposal = errors.New("mls: invalid proposal")
	// ErrInvalidProposalList means a Commit's proposal list breaks a rule of
	// RFC 9420 section 12.2.
	ErrInvalidProposalList = errors.New("mls: invalid proposal list")
	// ErrUnknownProposal means a Commit references a proposal this member
	// has not received in the current epoch.
	ErrUnknownProposal = errors.New("mls: unknown proposal reference")
	// ErrPathRequired means a Commit lacks the UpdatePath its proposals
	// require (RFC 9420 section 12.4).
	ErrPathRequired = errors.New("mls: commit requires an UpdatePath")
	// ErrConfirmationTag means a Commit's or GroupInfo's confirmation tag
	// does not verify.
	ErrConfirmationTag = errors.New("mls: confirmation tag does not verify")
	// ErrUnknownPSK means a pre-shared key named by a proposal or Welcome is
	// not available to this member.
	ErrUnknownPSK = errors.New("mls: unknown pre-shared key")
	// ErrInvalidSender means a message's sender is not allowed to send its
	// content, or does not exist.
	ErrInvalidSender = errors.New("mls: invalid sender")
	// ErrInactive means the group can no longer be used: this member was
	// removed, or a ReInit was committed.
	ErrInactive = errors.New("mls: group is no longer active")
	// ErrNoPendingCommit means there is no locally created commit to merge.
	ErrNoPendingCommit = errors.New("mls: no pending commit")
	// ErrWireFormat means a message uses a wire format not allowed for its
	// content (RFC 9420 section 6).
	ErrWireFormat = errors.New("mls: wire format not allowed here")
	// ErrInvalidGroupInfo means a GroupInfo is unusable: bad signature,
	// missing tree, missing external_pub, wrong suite.
	ErrInvalidGroupInfo = errors.New("mls: invalid GroupInfo")
	// ErrStaleCommit means a staged commit can no longer be merged: the
	// group has left the epoch it was staged in, or the commit was already
	// merged or discarded.
	ErrStaleCommit = errors.New("mls: staged commit is stale")
	// ErrNotCommit means a message given to StageCommit carries no commit.
	ErrNotCommit = errors.New("mls: message is not a commit")
	// ErrOwnMessage means a message was sent by this member and cannot be
	// processed by it: its keys were consumed when it was sent (an
	// application message or a PrivateMessage proposal), or it is a commit
	// from this member's leaf that is not its pending commit (one it
	// discarded, for example).
	ErrOwnMessage = errors.New("mls: this member's own message")
	// ErrOwnCommitMerged means a message is this member's own commit,
	// already merged (by MergePendingCommit or an earlier copy): nothing
	// is left to do and nothing changed.
	ErrOwnCommitMerged = errors.New("mls: this member's own commit, already merged")
)

// Defaults for the zero values of GroupConfig.
const (
	DefaultResumptionEpochs = 8
	DefaultPastEpochs       = 5
)

// GroupConfig is a member's local policy for a group. Its zero value is a
// complete configuration.
type GroupConfig struct {
	// HandshakeWireFormat frames this member's proposals and commits by
	// default: WireFormatPublicMessage (the zero value selects it) or
	// WireFormatPrivateMessage. MessageOptions and CommitOptions choose
	// per message.
	HandshakeWireFormat WireFormat
	// RatchetTreeInWelcome puts the ratchet_tree extension in the GroupInfo
	// of Welcomes; otherwise the tree travels out of band.
	RatchetTreeInWelcome bool
	// SecretTree bounds out-of-order decryption: how far ahead a received
	// generation may be (default 1,000) and how many skipped keys are kept.
	SecretTree secrettree.Config
	// PaddingBlock pads PrivateMessage plaintexts to a multiple of this many
	// bytes; zero means no padding.
	PaddingBlock int
	// ResumptionEpochs is how many past epochs' resumption PSKs are kept
	// (zero keeps DefaultResumptionEpochs).
	ResumptionEpochs int
	// PastEpochs is how many past epochs' application keys are kept so that
	// late application messages still decrypt (zero keeps
	// DefaultPastEpochs; negative keeps none).
	PastEpochs int
	// Clock gives the time KeyPackage lifetimes are checked against; it is
	// read at every check. Nil means time.Now.
	Clock func() time.Time
	// MaxLifetime bounds not_after - not_before of the KeyPackages added;
	// zero means no bound.
	MaxLifetime time.Duration
	// Rand is the source of every random value the group draws (keys, path
	// secrets, nonces, reuse guards, HPKE ephemeral keys). Nil means the
	// system's randomness; a seeded reader makes a run reproducible byte
	// for byte (signatures are deterministic in every supported suite).
	Rand io.Reader
	// CredentialValidator accepts or refuses every new or changed leaf;
	// nil means DefaultCredentialValidator.
	CredentialValidator CredentialValidator
}

// LeafParams is the content of a member's own leaf.
type LeafParams struct {
	Credential   Credential
	Capabilities Capabilities
	Extensions   Extensions
	// Lifetime applies to the key_package leaf of a group's creator; the
	// zero value means "always valid".
	Lifetime Lifetime
}

// withDefaults fills empty capability lists with what this member uses.
func (p LeafParams) withDefaults(cs CipherSuite) LeafParams {
	if len(p.Capabilities.Versions) == 0 {
		p.Capabilities.Versions = []ProtocolVersion{MLS10}
	}
	if len(p.Capabilities.CipherSuites) == 0 {
		p.Capabilities.CipherSuites = []CipherSuite{cs}
	}
	if len(p.Capabilities.Credentials) == 0 {
		p.Capabilities.Credentials = []CredentialType{p.Credential.Type}
	}
	if p.Lifetime == (Lifetime{}) {
		p.Lifetime = Lifetime{NotBefore: 0, NotAfter: math.MaxUint64}
	}
	return p
}

// epochState is everything that changes when a commit is accepted. It is
// built whole and swapped in, so a rejected commit leaves nothing behind.
type epochState struct {
	ctx             GroupContext
	tree            *Tree
	interim         []byte
	confirmationTag []byte
	keys            *keyschedule.Epoch
	secrets         *secrettree.Tree
	myLeaf          treemath.LeafIndex
	// nodeKeys holds the private keys this member knows: its leaf and the
	// path nodes it received or created.
	nodeKeys map[treemath.NodeIndex]*cipher.HPKEPrivateKey
}

// drop zeroes the state's secrets.
func (st *epochState) drop() {
	if st.keys != nil {
		st.keys.Drop()
	}
	if st.secrets != nil {
		st.secrets.Drop()
	}
}

// pastEpoch is what is kept of an epoch after a commit: enough to decrypt
// and authenticate its late application messages, and to recognise this
// member's own commit that ended it.
type pastEpoch struct {
	ctx        GroupContext
	senderData cipher.Secret
	secrets    *secrettree.Tree
	// sigKeys holds each leaf's signature key (nil for a blank leaf).
	sigKeys [][]byte
	// ownCommit is the SHA-256 of this member's commit that ended the
	// epoch, or nil.
	ownCommit []byte
}

func (p *pastEpoch) drop() {
	p.senderData.Zero()
	p.secrets.Drop()
}

// storedProposal is a proposal received (or sent) in the current epoch.
type storedProposal struct {
	ref      []byte
	proposal *Proposal
	sender   Sender
}

// Group is one member's view of an MLS group (RFC 9420): its epoch
// state, the proposals received in the current epoch, and the keys it
// holds. A Group is not safe for concurrent use.
type Group struct {
	cfg    GroupConfig
	suite  *cipher.Suite
	signer *cipher.SignatureKey
	st     *epochState
	// past holds the kept past epochs, oldest first.
	past []*pastEpoch

	proposals []storedProposal
	// updateKeys holds the leaf private keys of this member's own Update
	// proposals, by proposal reference.
	updateKeys map[string]*cipher.HPKEPrivateKey
	// pending is the commit this member created and has not merged.
	pending *StagedCommit

	externalPSKs map[string]cipher.Secret
	resumption   map[uint64]cipher.Secret

	inactive error
	reinit   *ReInit
}

func newSuite(cs CipherSuite) (*cipher.Suite, error) {
	return cipher.New(cs)
}

func (c GroupConfig) withDefaults() GroupConfig {
	if c.HandshakeWireFormat == 0 {
		c.HandshakeWireFormat = WireFormatPublicMessage
	}
	if c.ResumptionEpochs == 0 {
		c.ResumptionEpochs = DefaultResumptionEpochs
	}
	if c.PastEpochs == 0 {
		c.PastEpochs = DefaultPastEpochs
	}
	return c
}

// checkWireFormat accepts the two wire formats handshake messages may use.
func checkWireFormat(wf WireFormat) error {
	if wf != WireFormatPublicMessage && wf != WireFormatPrivateMessage {
		return fmt.Errorf("%w: handshake wire format %d", ErrWireFormat, wf)
	}
	return nil
}

func newGroup(cfg GroupConfig, suite *cipher.Suite, signer *cipher.SignatureKey) (*Group, error) {
	cfg = cfg.withDefaults()
	if err := checkWireFormat(cfg.HandshakeWireFormat); err != nil {
		return nil, err
	}
	return &Group{
		cfg: cfg, suite: suite, signer: signer,
		updateKeys:   map[string]*cipher.HPKEPrivateKey{},
		externalPSKs: map[string]cipher.Secret{},
		resumption:   map[uint64]cipher.Secret{},
	}, nil
}

// now is the time lifetimes are checked against.
func (g *Group) now() time.Time {
	if g.cfg.Clock != nil {
		return g.cfg.Clock()
	}
	return time.Now()
}

// leafRules are the lifetime rules for a KeyPackage leaf checked now.
func (g *Group) leafRules() LeafNodeRules {
	return LeafNodeRules{Now: g.now(), MaxLifetime: g.cfg.MaxLifetime}
}

// CreateGroup starts a group with one member, the caller (RFC 9420
// section 11), in epoch 0.
func CreateGroup(cs CipherSuite, groupID []byte, signer *cipher.SignatureKey, leaf LeafParams, extensions Extensions, cfg GroupConfig) (*Group, error) {
	suite, err := newSuite(cs)
	if err != nil {
		return nil, err
	}
	g, err := newGroup(cfg, suite, signer)
	if err != nil {
		return nil, err
	}
	leaf = leaf.withDefaults(cs)
	encKey, err := suite.GenerateHPKEKeyFrom(g.cfg.Rand)
	if err != nil {
		return nil, err
	}
	ln := &LeafNode{
		EncryptionKey: encKey.PublicKey(), SignatureKey: signer.PublicKey(),
		Credential: leaf.Credential, Capabilities: leaf.Capabilities,
		Source: LeafNodeSourceKeyPackage, Lifetime: leaf.Lifetime, Extensions: leaf.Extensions,
	}
	if err := ln.Sign(suite, signer, nil, 0); err != nil {
		return nil, err
	}
	tree, err := NewTree(RatchetTree{{Type: NodeTypeLeaf, Leaf: ln}})
	if err != nil {
		return nil, err
	}
	tree.cacheHashes()
	ctx := GroupContext{Version: MLS10, CipherSuite: cs, GroupID: bytes.Clone(groupID), Extensions: extensions}
	if err := checkGroupExtensions(extensions); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidProposal, err)
	}
	required, _, err := extensions.RequiredCapabilities()
	if err != nil {
		return nil, err
	}
	if err := supportsGroup(ln, &ctx, &required); err != nil {
		return nil, err
	}
	if ctx.TreeHash, err = tree.TreeHash(suite); err != nil {
		return nil, err
	}
	initSecret, err := randomSecret(g.cfg.Rand, suite.Nh())
	if err != nil {
		return nil, err
	}
	defer initSecret.Zero()
	ctxBytes, err := Marshal(&ctx)
	if err != nil {
		return nil, err
	}
	keys, err := keyschedule.Derive(suite, initSecret, nil, nil, ctxBytes)
	if err != nil {
		return nil, err
	}
	st := &epochState{ctx: ctx, tree: tree, keys: keys, myLeaf: 0,
		nodeKeys: map[treemath.NodeIndex]*cipher.HPKEPrivateKey{0: encKey}}
	if err := g.finishEpochState(st); err != nil {
		keys.Drop()
		return nil, err
	}
	keys.DropWelcomeSecrets()
	g.st = st
	return g, nil
}

// checkGroupExtensions checks the syntax rules of GroupContext extensions
// beyond their encoding: no type twice (RFC 9420 section 13.4) and an
// app_data_dictionary in strictly increasing component order.
func checkGroupExtensions(exts Extensions) error {
	if t, dup := exts.Duplicate(); dup {
		return fmt.Errorf("group extension 0x%04x twice", uint16(t))
	}
	if _, _, err := exts.AppDataDictionary(); err != nil {
		return err
	}
	return nil
}

// finishEpochState computes the confirmation tag and interim transcript
// hash of a state whose keys and confirmed transcript hash are set, and
// its secret tree.
func (g *Group) finishEpochState(st *epochState) error {
	tag, err := st.keys.ConfirmationTag(st.ctx.ConfirmedTranscriptHash)
	if err != nil {
		return err
	}
	return g.finishWithTag(st, tag)
}

func (g *Group) finishWithTag(st *epochState, tag []byte) error {
	var err error
	st.confirmationTag = tag
	if st.interim, err = keyschedule.InterimTranscriptHash(g.suite, st.ctx.ConfirmedTranscriptHash, tag); err != nil {
		return err
	}
	st.secrets, err = st.keys.NewSecretTree(st.tree.LeafCount(), g.cfg.SecretTree)
	return err
}

// install makes next the current epoch (RFC 9420 section 9.2): the old
// epoch's secrets are deleted except its resumption PSK and, for the
// configured number of past epochs, what its late application messages
// need (sender-data secret, secret tree, signature keys). ownCommit is the
// SHA-256 of this member's own commit that ended the old epoch, if it was.
func (g *Group) install(next *epochState, ownCommit []byte) {
	old := g.st
	if old != nil && old.keys != nil {
		if r := old.keys.ResumptionPSK(); r != nil {
			g.resumption[old.ctx.Epoch] = r.Clone()
		}
		if g.cfg.PastEpochs > 0 && old.secrets != nil {
			p := &pastEpoch{ctx: old.ctx, senderData: old.keys.SenderDataSecret().Clone(), secrets: old.secrets,
				sigKeys: old.tree.signatureKeys(), ownCommit: ownCommit}
			g.past = append(g.past, p)
			if n := len(g.past) - g.cfg.PastEpochs; n > 0 {
				for _, gone := range g.past[:n] {
					gone.drop()
				}
				g.past = slices.Delete(g.past, 0, n)
			}
			old.secrets = nil // kept in p, not dropped below
		}
		old.drop()
	}
	if r := next.keys.ResumptionPSK(); r != nil {
		g.resumption[next.ctx.Epoch] = r.Clone()
	}
	for e, s := range g.resumption {
		if e+uint64(g.cfg.ResumptionEpochs) <= next.ctx.Epoch {
			s.Zero()
			delete(g.resumption, e)
		}
	}
	next.keys.DropWelcomeSecrets()
	if g.pending != nil && g.pending.next != next {
		// Another member's commit won: this member's own is void.
		g.pending.discard()
	}
	g.st = next
	g.proposals = nil
	clear(g.updateKeys)
	g.pending = nil
}

// signatureKeys lists every leaf's signature key (nil for blank leaves).
// The slices are shared with the leaves, which are never changed in place.
func (t *Tree) signatureKeys() [][]byte {
	out := make([][]byte, t.leaves)
	for l := range out {
		if ln := t.Leaf(treemath.LeafIndex(l)); ln != nil {
			out[l] = ln.SignatureKey
		}
	}
	return out
}

// GroupID returns the group's identifier.
func (g *Group) GroupID() []byte { return g.st.ctx.GroupID }

// Epoch returns the current epoch number.
func (g *Group) Epoch() uint64 { return g.st.ctx.Epoch }

// CipherSuite returns the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return g.st.ctx.CipherSuite }

// GroupContext returns a copy of the current GroupContext.
func (g *Group) GroupContext() GroupContext { return g.st.ctx }

// Extensions returns the current GroupContext extensions.
func (g *Group) Extensions() Extensions { return g.st.ctx.Extensions }

// LeafIndex is this member's leaf.
func (g *Group) LeafIndex() uint32 { return uint32(g.st.myLeaf) }

// Tree returns the current ratchet tree in its array form; callers must not
// modify it.
func (g *Group) Tree() RatchetTree { return g.st.tree.RatchetTree() }

// EpochAuthenticator returns the current epoch_authenticator (RFC 9420
// section 8.7), or nil when the group is inactive.
func (g *Group) EpochAuthenticator() []byte {
	if g.inactive != nil {
		return nil
	}
	return bytes.Clone(g.st.keys.EpochAuthenticator())
}

// Export derives an exported secret (RFC 9420 section 8.5, MLS-Exporter).
func (g *Group) Export(label string, context []byte, length int) (cipher.Secret, error) {
	if g.inactive != nil {
		return nil, g.inactive
	}
	return g.st.keys.Exporter(label, context, length)
}

// Active reports nil while the group can be used, otherwise why not
// (wrapping ErrInactive).
func (g *Group) Active() error { return g.inactive }

// PendingReInit returns the committed ReInit proposal, if any.
func (g *Group) PendingReInit() *ReInit { return g.reinit }

// Member is one occupied leaf of the tree.
type Member struct {
	Index        uint32
	Credential   Credential
	SignatureKey []byte
	// EncryptionKey is the leaf's current HPKE public key.
	EncryptionKey []byte
}

// Members lists the current members by leaf index.
func (g *Group) Members() []Member {
	var out []Member
	for l := uint32(0); l < g.st.tree.LeafCount(); l++ {
		if ln := g.st.tree.Leaf(treemath.LeafIndex(l)); ln != nil {
			out = append(out, Member{Index: l, Credential: ln.Credential, SignatureKey: ln.SignatureKey, EncryptionKey: ln.EncryptionKey})
		}
	}
	return out
}

// AddExternalPSK registers an external pre-shared key usable in
// PreSharedKey proposals and Welcomes.
func (g *Group) AddExternalPSK(id []byte, secret []byte) {
	g.externalPSKs[string(id)] = cipher.Secret(secret).Clone()
}

// clone copies the tree's node slice; nodes themselves are never mutated
// in place by tree operations, so sharing them is safe.
func (t *Tree) clone() *Tree {
	c := &Tree{nodes: slices.Clone(t.nodes), leaves: t.leaves}
	if t.hashes != nil {
		c.hashes = slices.Clone(t.hashes)
	}
	return c
}

// cacheHashes makes the tree keep per-node tree hashes between calls, so a
// commit rehashes only the nodes it changed. The caller promises that the
// nodes are changed only through Tree's methods from now on.
func (t *Tree) cacheHashes() {
	if t.hashes == nil {
		t.hashes = make([][]byte, len(t.nodes))
	}
}

// ctxBytes encodes a GroupContext.
func ctxBytes(ctx *GroupContext) ([]byte, error) { return Marshal(ctx) }
