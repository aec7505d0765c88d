package marmot

import (
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/keyschedule"
)

// Convergence policy v1 (protocol-core/convergence.md): protocol constants,
// not group-tunable.
const (
	maxRewindCommits             = 5
	appPayloadPastEpochLimit     = 5
	witnessQuorumSendersPerEpoch = 2
	witnessQuorumEpochs          = 1
	maxWitnessOverrideDepth      = 1
)

// maxDeferred bounds the undecryptable kind 445 events a group keeps to
// retry when its set of epoch keys changes.
const maxDeferred = 512

// GroupOptions are a member's local choices for a group.
type GroupOptions struct {
	// Now is the clock (KeyPackage lifetimes, proof and event times); nil
	// means time.Now.
	Now func() time.Time
	// Rand is the source of the group's randomness; nil means the
	// system's.
	Rand io.Reader
	// ReadLegacyNIP44 also tries the MIP-era NIP-44 form of kind 445
	// content when no current key opens an event.
	ReadLegacyNIP44 bool
}

func (o GroupOptions) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

func (o GroupOptions) random() io.Reader {
	if o.Rand == nil {
		return rand.Reader
	}
	return o.Rand
}

// NewGroupParams describe a group being created.
type NewGroupParams struct {
	Name, Description string
	// Admins are the group's admins besides its creator, who is always one.
	Admins []Pubkey
	// Relays carry the group's kind 445 events (routing component 0x8004).
	Relays []string
}

// Group is one member's Marmot group: the MLS group (package mls) with the
// Marmot rules around it. Commits wait for publication (publish before
// apply): a method that changes the group returns an Outgoing to publish,
// and the caller confirms with ConfirmPublished once a relay answered
// OK true, or drops it with DiscardPending. A Group is not safe for
// concurrent use.
type Group struct {
	account Signer
	sk      *cipher.SignatureKey
	cs      mls.CipherSuite
	opts    GroupOptions
	mls     *mls.Group
	cfg     mls.GroupConfig

	// tip is the canonical state's node; nodes holds every retained
	// state (canonical ancestors within the rollback horizon, and
	// competing branches), for trial decryption and convergence.
	tip   *node
	nodes []*node
	seen  map[[32]byte]uint64 // message id -> epoch, for deduplication
	// delivered says which app payloads were handed to the application
	// (and not withdrawn by a branch switch since).
	delivered map[[32]byte]bool
	// deferred are undecryptable events kept for retry.
	deferred []*nostr.Event
	// pending is this member's commit awaiting publication.
	pending *Outgoing
	// Rewinds counts branch switches convergence made (the group left a
	// canonical commit for a better competing branch).
	Rewinds int
}

// node is one retained group state: an epoch reached by a particular
// commit. The canonical tip's state lives in Group.mls; every other node
// keeps its serialized state.
type node struct {
	epoch  uint64
	state  []byte
	key    []byte // kind 445 key of the epoch
	legacy []byte // MIP-era secret, when reading the NIP-44 form
	parent *node
	h      [32]byte // routing id of the epoch
	// The commit that made this node from its parent (none for a root):
	// its digest (SHA-256 of the MLSMessage), committer and priority.
	digest     [32]byte
	committer  Pubkey
	privileged bool
	// witnesses are the accounts whose application messages decrypted at
	// this node's epoch.
	witnesses map[Pubkey]bool
	// apps are the app payloads decrypted at this node's epoch; those of
	// a node off the canonical path are held until it becomes canonical.
	apps []Received
}

func (g *Group) engineConfig() mls.GroupConfig {
	return mls.GroupConfig{
		HandshakeWireFormat:  mls.WireFormatPublicMessage,
		RatchetTreeInWelcome: true,
		PastEpochs:           appPayloadPastEpochLimit,
		Clock:                g.opts.Now,
		MaxLifetime:          MaxKeyPackageLifetime,
		Rand:                 g.opts.Rand,
		CredentialValidator:  CredentialValidator(g.cs),
	}
}

// CreateGroup creates a group with account as its only member and admin,
// in epoch 0, with a fresh random MLS group id and Nostr routing id.
func CreateGroup(account Signer, p NewGroupParams, opts GroupOptions) (*Group, error) {
	g := &Group{account: account, cs: mls.X25519AES128GCMSHA256Ed25519, opts: opts, seen: map[[32]byte]uint64{}, delivered: map[[32]byte]bool{}}
	g.cfg = g.engineConfig()
	suite, err := cipher.New(g.cs)
	if err != nil {
		return nil, err
	}
	if g.sk, err = suite.GenerateSignatureKeyFrom(opts.random()); err != nil {
		return nil, fmt.Errorf("marmot: signature key: %w", err)
	}
	leaf, err := leafParams(account, g.cs, g.sk, nil, opts.now())
	if err != nil {
		return nil, err
	}
	state := GroupState{
		Required:   ComponentsList{ComponentAdminPolicy, ComponentNostrRouting, ComponentIdentityProof},
		Profile:    GroupProfile{Name: p.Name, Description: p.Description},
		HasProfile: true,
		Admins:     AdminPolicy{Admins: append([]Pubkey{account.PublicKey()}, p.Admins...)},
		Routing:    NostrRouting{Relays: p.Relays},
	}
	state.Admins.Admins = slices.Compact(sortedPubkeys(state.Admins.Admins))
	if _, err := io.ReadFull(opts.random(), state.Routing.GroupID[:]); err != nil {
		return nil, err
	}
	ext, err := groupExtensions(state)
	if err != nil {
		return nil, err
	}
	groupID := make([]byte, 32)
	if _, err := io.ReadFull(opts.random(), groupID); err != nil {
		return nil, err
	}
	if g.mls, err = mls.CreateGroup(g.cs, groupID, g.sk, leaf, ext, g.cfg); err != nil {
		return nil, fmt.Errorf("marmot: create group: %w", err)
	}
	if err := g.setTip(nil, nil); err != nil {
		return nil, err
	}
	return g, nil
}

func sortedPubkeys(p []Pubkey) []Pubkey {
	out := slices.Clone(p)
	slices.SortFunc(out, func(a, b Pubkey) int { return slices.Compare(a[:], b[:]) })
	return out
}

// setTip makes the live group's current state the canonical tip, a child
// of parent made by the given commit.
func (g *Group) setTip(parent *node, made *node) error {
	n := made
	if n == nil {
		n = &node{parent: parent}
	}
	n.epoch = g.mls.Epoch()
	n.state = nil
	var err error
	if n.key, err = GroupEventKey(g.mls); err != nil {
		return err
	}
	if g.opts.ReadLegacyNIP44 {
		if n.legacy, err = LegacyGroupEventSecret(g.mls); err != nil {
			return err
		}
	}
	st, err := ReadGroupState(g.mls.Extensions())
	if err != nil {
		return err
	}
	n.h = st.Routing.GroupID
	if n.witnesses == nil {
		n.witnesses = map[Pubkey]bool{}
	}
	if !slices.Contains(g.nodes, n) {
		g.nodes = append(g.nodes, n)
	}
	g.tip = n
	g.prune()
	return nil
}

// prune drops states outside the rollback horizon.
func (g *Group) prune() {
	floor := int64(g.tip.epoch) - maxRewindCommits
	keep := g.nodes[:0]
	for _, n := range g.nodes {
		if int64(n.epoch) >= floor {
			keep = append(keep, n)
			continue
		}
		for _, a := range n.apps {
			delete(g.delivered, a.ID)
		}
	}
	clear(g.nodes[len(keep):])
	g.nodes = keep
	for _, n := range g.nodes {
		if n.parent != nil && int64(n.parent.epoch) < floor {
			n.parent = nil
		}
	}
	for id, e := range g.seen {
		if int64(e) < floor-1 {
			delete(g.seen, id)
		}
	}
}

// State returns the group's Marmot state (admins, routing, profile).
func (g *Group) State() GroupState {
	st, _ := ReadGroupState(g.mls.Extensions()) // checked whenever the state changes
	return st
}

// NostrGroupID is the current routing id, the h tag of the group's events.
func (g *Group) NostrGroupID() [32]byte { return g.tip.h }

// Epoch is the current epoch.
func (g *Group) Epoch() uint64 { return g.mls.Epoch() }

// Account is this member's account.
func (g *Group) Account() Pubkey { return g.account.PublicKey() }

// MLS is the engine group, for inspection; changing it bypasses the
// Marmot rules.
func (g *Group) MLS() *mls.Group { return g.mls }

// Members lists the members' accounts by leaf.
func (g *Group) Members() []Pubkey { return membersOf(g.mls) }

func membersOf(m *mls.Group) []Pubkey {
	var out []Pubkey
	for _, mem := range m.Members() {
		if len(mem.Credential.Identity) == 32 {
			out = append(out, Pubkey(mem.Credential.Identity))
		}
	}
	return out
}

// accountAt is the account of the member at leaf, in m.
func accountAt(m *mls.Group, leaf uint32) (Pubkey, bool) {
	for _, mem := range m.Members() {
		if mem.Index == leaf {
			if len(mem.Credential.Identity) != 32 {
				return Pubkey{}, false
			}
			return Pubkey(mem.Credential.Identity), true
		}
	}
	return Pubkey{}, false
}

// leafOf is the leaf of account in m.
func leafOf(m *mls.Group, account Pubkey) (uint32, bool) {
	for _, mem := range m.Members() {
		if string(mem.Credential.Identity) == string(account[:]) {
			return mem.Index, true
		}
	}
	return 0, false
}

// IsAdmin reports whether account is an admin of the group now.
func (g *Group) IsAdmin(account Pubkey) bool { return g.State().Admins.IsAdmin(account) }

// Welcome is the Welcome for one invitee of a commit, to gift-wrap once the
// commit is published.
type Welcome struct {
	Invitee Pubkey
	// KeyPackageEvent is the id of the KeyPackage event consumed.
	KeyPackageEvent string
	// Rumor is the unsigned kind 444 rumor; WrapWelcome seals it.
	Rumor nostr.Event
}

// Outgoing is a commit or proposal this member made: the kind 445 event
// to publish (nil for the founding commit, which is never published) and
// the Welcomes of the members it adds.
type Outgoing struct {
	Event    *nostr.Event
	Welcomes []Welcome
	// NewEpoch is the epoch the commit enters once published.
	NewEpoch uint64
	// ID is the message id (SHA-256 of the MLSMessage).
	ID      [32]byte
	message []byte
	commit  bool
}

// wrap seals an MLSMessage of the current epoch into a kind 445 event.
func (g *Group) wrap(msg []byte, expiration time.Time) (*nostr.Event, error) {
	return NewGroupEvent(g.tip.key, g.tip.h, msg, GroupEventOptions{Expiration: expiration, CreatedAt: g.opts.now(), Rand: g.opts.Rand})
}

func (g *Group) ready() error {
	if err := g.mls.Active(); err != nil {
		return err
	}
	if g.pending != nil {
		return fail(ErrPendingCommit, nil, "confirm or discard the pending commit first")
	}
	return nil
}

// commit makes a commit with the given proposals by value, checking it
// against the group's rules as a receiver would.
func (g *Group) commit(props []mls.Proposal) (*Outgoing, []byte, error) {
	if err := g.ready(); err != nil {
		return nil, nil, err
	}
	out, err := g.mls.Commit(mls.CommitOptions{Proposals: props, ForcePath: true})
	if err != nil {
		return nil, nil, fmt.Errorf("marmot: commit: %w", err)
	}
	if _, err := authorizeCommit(g.mls, out.Staged); err != nil {
		g.mls.DiscardPendingCommit()
		return nil, nil, err
	}
	o := &Outgoing{NewEpoch: out.NewEpoch, ID: MessageID(out.Commit), message: out.Commit, commit: true}
	// The founding commit (epoch 0, the creator alone) is never published:
	// nobody else holds epoch 0.
	if g.mls.Epoch() > 0 || len(g.mls.Members()) > 1 {
		if o.Event, err = g.wrap(out.Commit, time.Time{}); err != nil {
			g.mls.DiscardPendingCommit()
			return nil, nil, err
		}
	}
	g.pending = o
	return o, out.Welcome, nil
}

// Invite adds the owners of the given KeyPackage events (admins only). The
// events are checked with ValidateKeyPackageEvent first. Once the commit is
// published and confirmed, wrap each Welcome with WrapWelcome and send it
// to the invitee's inbox relays.
func (g *Group) Invite(keyPackages ...*nostr.Event) (*Outgoing, error) {
	if !g.IsAdmin(g.Account()) {
		return nil, fail(ErrNotAdmin, nil, "only admins invite")
	}
	var props []mls.Proposal
	var welcomes []Welcome
	for _, ev := range keyPackages {
		if err := VerifyEvent(ev); err != nil {
			return nil, fail(ErrKeyPackageProfile, err, "KeyPackage event: %v", err)
		}
		kp, err := ValidateKeyPackageEvent(ev, g.opts.now())
		if err != nil {
			return nil, err
		}
		props = append(props, mls.Proposal{Type: mls.ProposalAdd, Add: &mls.Add{KeyPackage: *kp.KeyPackage}})
		welcomes = append(welcomes, Welcome{Invitee: kp.Author, KeyPackageEvent: ev.ID})
	}
	o, welcome, err := g.commit(props)
	if err != nil {
		return nil, err
	}
	relays := g.State().Routing.Relays
	for i := range welcomes {
		if welcomes[i].Rumor, err = NewWelcomeRumor(g.Account(), welcome, welcomes[i].KeyPackageEvent, relays, g.opts.now()); err != nil {
			g.DiscardPending()
			return nil, err
		}
	}
	o.Welcomes = welcomes
	return o, nil
}

// SelfUpdate commits a fresh path for this member's leaf (with a new
// identity-proof-carrying leaf), which any member may do.
func (g *Group) SelfUpdate() (*Outgoing, error) {
	o, _, err := g.commit(nil)
	return o, err
}

// Remove removes the members of the given accounts (admins only).
func (g *Group) Remove(accounts ...Pubkey) (*Outgoing, error) {
	var props []mls.Proposal
	for _, a := range accounts {
		leaf, ok := leafOf(g.mls, a)
		if !ok {
			return nil, fail(ErrForbidden, nil, "%s is not a member", a.Hex())
		}
		props = append(props, mls.Proposal{Type: mls.ProposalRemove, Remove: &mls.Remove{Removed: leaf}})
	}
	o, _, err := g.commit(props)
	return o, err
}

// UpdateComponent changes one component of the group state with an
// AppDataUpdate committed by value (admins only): the profile, the admin
// policy, or the Nostr routing state (a new routing id rotates the group's
// address; this commit itself still goes to the old one).
func (g *Group) UpdateComponent(id mls.ComponentID, data []byte) (*Outgoing, error) {
	u := &mls.AppDataUpdate{ComponentID: id, Op: mls.AppDataOpUpdate, Update: data}
	if err := checkComponentUpdate(g.State(), u); err != nil {
		return nil, err
	}
	o, _, err := g.commit([]mls.Proposal{{Type: mls.ProposalAppDataUpdate, AppDataUpdate: u}})
	return o, err
}

// SetAdmins replaces the admin list (admins only). An admin leaves the
// list this way before it may leave the group with Leave.
func (g *Group) SetAdmins(admins ...Pubkey) (*Outgoing, error) {
	data, err := AdminPolicy{Admins: admins}.Marshal()
	if err != nil {
		return nil, err
	}
	return g.UpdateComponent(ComponentAdminPolicy, data)
}

// Leave proposes this member's removal with a SelfRemove proposal (a
// PublicMessage, as the profile pins), which another member commits. An
// admin must first drop itself from the admin list.
func (g *Group) Leave() (*Outgoing, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	if g.IsAdmin(g.Account()) {
		return nil, fail(ErrForbidden, nil, "an admin cannot SelfRemove; leave the admin list first")
	}
	msg, _, err := g.mls.ProposeSelfRemove()
	if err != nil {
		return nil, fmt.Errorf("marmot: SelfRemove: %w", err)
	}
	ev, err := g.wrap(msg, time.Time{})
	if err != nil {
		return nil, err
	}
	id := MessageID(msg)
	g.seen[id] = g.mls.Epoch()
	return &Outgoing{Event: ev, NewEpoch: g.mls.Epoch(), ID: id, message: msg}, nil
}

// CommitProposals commits the proposals received this epoch (another
// member's SelfRemove, for example), which any member may do when they
// are only SelfRemoves.
func (g *Group) CommitProposals() (*Outgoing, error) {
	o, _, err := g.commit(nil)
	return o, err
}

// ConfirmPublished applies this member's pending commit after a relay
// accepted its event (publish before apply). If another member's commit
// of the same epoch was applied meanwhile, the two compete under the
// convergence policy, as any other pair of commits.
func (g *Group) ConfirmPublished() (*Received, error) {
	o := g.pending
	if o == nil {
		return nil, fail(ErrPendingCommit, nil, "nothing is pending")
	}
	g.pending = nil
	if pc := g.mls.PendingCommit(); pc != nil && pc.Epoch == g.tip.epoch {
		return g.applyCommit(g.tip, g.mls, pc, o.message)
	}
	for _, n := range g.nodes {
		if n.epoch == o.NewEpoch-1 && n != g.tip && n.state != nil {
			r, err := g.commitOn(n, o.message)
			if err == nil {
				return r, nil
			}
		}
	}
	return nil, fail(ErrStale, nil, "the pending commit's epoch is no longer retained")
}

// DiscardPending drops this member's pending commit (its publication
// failed).
func (g *Group) DiscardPending() {
	if g.pending != nil && g.pending.commit {
		g.mls.DiscardPendingCommit()
	}
	g.pending = nil
}

// Send encrypts an app payload from this member (an unsigned Nostr event
// of the given kind) into a kind 445 event.
func (g *Group) Send(kind int, tags nostr.Tags, content string) (*nostr.Event, [32]byte, error) {
	if err := g.ready(); err != nil {
		return nil, [32]byte{}, err
	}
	payload, err := NewAppEvent(g.Account(), kind, tags, content, g.opts.now().Unix()).Marshal()
	if err != nil {
		return nil, [32]byte{}, err
	}
	msg, err := g.mls.Protect(payload, nil)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("marmot: protect: %w", err)
	}
	id := MessageID(msg)
	g.seen[id] = g.mls.Epoch()
	// This member's own message witnesses the branch for it as it does
	// for every receiver.
	g.tip.witnesses[g.Account()] = true
	ev, err := g.wrap(msg, time.Time{})
	return ev, id, err
}

// SendChat sends a kind 9 chat message.
func (g *Group) SendChat(text string) (*nostr.Event, error) {
	ev, _, err := g.Send(KindChat, nil, text)
	return ev, err
}

// Join enters a group from a Welcome rumor (already unwrapped with
// UnwrapWelcome) consuming the KeyPackage in bundle, and checks what the
// profile requires: the Welcome is for that KeyPackage, the GroupInfo
// carries the ratchet tree, every leaf's identity proof is valid, the
// group state is the current profile's, and the Welcome's author (the
// GroupInfo signer, who must be the rumor's author) is an admin. On any
// failure nothing was changed and the KeyPackage remains usable.
func Join(account Signer, w *WelcomeRumor, bundle *KeyPackageBundle, opts GroupOptions) (*Group, error) {
	if bundle == nil {
		return nil, fail(ErrUnknownKeyPackage, nil, "no KeyPackage for event %s", quote(w.KeyPackageEvent))
	}
	g := &Group{account: account, cs: bundle.KeyPackage.CipherSuite, opts: opts, sk: bundle.SignatureKey, seen: map[[32]byte]uint64{}, delivered: map[[32]byte]bool{}}
	g.cfg = g.engineConfig()
	signer, err := welcomeSigner(w.Welcome, bundle)
	if err != nil {
		return nil, err
	}
	if g.mls, err = mls.JoinFromWelcome(w.Welcome, bundle.KeyPackage, bundle.Private, bundle.SignatureKey, mls.JoinOptions{}, g.cfg); err != nil {
		return nil, fail(ErrWelcome, err, "join: %v", err)
	}
	st, err := ReadGroupState(g.mls.Extensions())
	if err != nil {
		return nil, err
	}
	author, ok := accountAt(g.mls, signer)
	switch {
	case !ok:
		return nil, fail(ErrWelcome, nil, "the Welcome's signer is not a member")
	case author != w.Inviter:
		return nil, fail(ErrWelcome, nil, "the Welcome was signed by %s, not by the rumor's author %s", author.Hex(), w.Inviter.Hex())
	case !st.Admins.IsAdmin(author):
		return nil, fail(ErrNotAdmin, nil, "the Welcome's author %s is not an admin of the group", author.Hex())
	}
	if err := g.setTip(nil, nil); err != nil {
		return nil, err
	}
	return g, nil
}

// welcomeSigner opens the Welcome's GroupInfo far enough to read which leaf
// signed it, the Welcome's author. (The engine's join checks the signature
// but does not report the signer.)
func welcomeSigner(welcome []byte, b *KeyPackageBundle) (uint32, error) {
	m, err := mls.DecodeMLSMessage(welcome)
	if err != nil || m.WireFormat != mls.WireFormatWelcome {
		return 0, fail(ErrWelcome, err, "not an MLSMessage Welcome")
	}
	w := m.Welcome
	suite, err := cipher.New(w.CipherSuite)
	if err != nil {
		return 0, fail(ErrWelcome, err, "ciphersuite 0x%04x", uint16(w.CipherSuite))
	}
	for i := range w.Secrets {
		if string(w.Secrets[i].NewMember) != string(b.Ref) {
			continue
		}
		gs, err := mls.DecryptGroupSecrets(suite, &w.Secrets[i], b.Private.InitKey, w.EncryptedGroupInfo)
		if err != nil {
			return 0, fail(ErrWelcome, err, "group secrets: %v", err)
		}
		if len(gs.PSKs) > 0 {
			return 0, fail(ErrWelcome, nil, "the Welcome needs pre-shared keys, which Marmot does not use")
		}
		psk, err := keyschedule.PSKSecret(suite, nil)
		if err != nil {
			return 0, err
		}
		ws, err := keyschedule.WelcomeSecret(suite, gs.JoinerSecret, psk)
		if err != nil {
			return 0, err
		}
		gi, err := mls.DecryptGroupInfo(suite, ws, w.EncryptedGroupInfo)
		if err != nil {
			return 0, fail(ErrWelcome, err, "GroupInfo: %v", err)
		}
		return gi.Signer, nil
	}
	return 0, fail(ErrUnknownKeyPackage, nil, "the Welcome holds no secrets for this KeyPackage")
}
