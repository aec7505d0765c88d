package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
)

// KindBurrow names Burrow's own engine (package mls) answering the peer
// protocol through an Engine.
const KindBurrow = "burrow"

var (
	// ErrNoGroup means an op needs a group membership the engine does not
	// hold (none yet, or it was removed).
	ErrNoGroup = errors.New("no group membership")
	// ErrUnknownOp is an op the protocol does not define.
	ErrUnknownOp = errors.New("unknown op")
	// ErrBadRequest is a request line or argument that cannot be decoded.
	ErrBadRequest = errors.New("bad request")
	// ErrHaveGroup means an op that starts a membership found one already.
	ErrHaveGroup = errors.New("this engine already holds a group")
	// ErrHeldCommit means a held commit waits for merge_pending or
	// discard_pending, so no other commit can be made.
	ErrHeldCommit = errors.New("a held commit is pending: merge_pending or discard_pending first")
	// ErrNoHeldCommit is merge_pending or discard_pending without one.
	ErrNoHeldCommit = errors.New("no held commit")
)

// EngineConfig chooses how the engine behaves where RFC 9420 leaves the
// choice to the client.
type EngineConfig struct {
	// HandshakeWireFormat frames commits: mls.WireFormatPublicMessage (the
	// zero value) or mls.WireFormatPrivateMessage.
	HandshakeWireFormat mls.WireFormat
	// AddWithPath gives add-only commits an UpdatePath. Without one (the
	// default, as ts-mls does) new leaves are listed in their parents'
	// unmerged_leaves, which is what the ts-mls quirk needs.
	AddWithPath bool
	// KeyPackageLifetime is the default validity of a KeyPackage made
	// without an explicit lifetime, starting an hour back; zero means 90
	// days.
	KeyPackageLifetime time.Duration
	// Now is the clock for lifetime checks; nil means time.Now.
	Now func() time.Time
	// PaddingBlock pads PrivateMessage plaintexts to a multiple of this
	// many bytes (mls.GroupConfig.PaddingBlock); zero pads nothing.
	PaddingBlock int
}

// pendingKeyPackage is a KeyPackage this engine published and can still
// join with.
type pendingKeyPackage struct {
	ref    []byte
	kp     *mls.KeyPackage
	priv   *mls.KeyPackagePrivate
	signer *cipher.SignatureKey
}

// Engine is Burrow's MLS engine behind the peer protocol, in the caller's
// process: it holds at most one group membership and any number of
// pending KeyPackages, like the subprocess peers. Requests go through the
// same JSON lines the subprocesses read, so a test exchanges exactly the
// bytes a remote peer would. It is safe for concurrent use (calls are
// serialized).
type Engine struct {
	cfg EngineConfig

	mu      sync.Mutex
	nextID  uint64
	pending []pendingKeyPackage
	group   *mls.Group
	// held says the group has a commit made with hold, waiting for
	// merge_pending or discard_pending.
	held bool
	// psks are the external PSKs registered with add_external_psk, given to
	// every group this engine joins.
	psks []mls.PSKEntry
}

// NewEngine returns an engine with no group.
func NewEngine(cfg EngineConfig) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.KeyPackageLifetime == 0 {
		cfg.KeyPackageLifetime = 90 * 24 * time.Hour
	}
	return &Engine{cfg: cfg}
}

// Kind is KindBurrow.
func (e *Engine) Kind() string { return KindBurrow }

// Group returns the engine's current group, or nil; tests use it to look
// at state the protocol does not expose (the ratchet tree).
func (e *Engine) Group() *mls.Group {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.group
}

// Close forgets the group and the pending KeyPackages.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.group, e.pending = nil, nil
	return nil
}

// Call has the same contract as (*Peer).Call: the request is encoded as a
// protocol line, answered by HandleLine, and the response line decoded
// into out; an ok:false answer is a *CallError.
func (e *Engine) Call(ctx context.Context, op string, args any, out any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s: %w", KindBurrow, op, err)
	}
	e.mu.Lock()
	e.nextID++
	id := e.nextID
	e.mu.Unlock()
	line, err := requestLine(id, op, args)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", KindBurrow, op, err)
	}
	raw := e.HandleLine(line)
	var head struct {
		ID    uint64 `json:"id"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return fmt.Errorf("%s: %s: bad response line: %w", KindBurrow, op, err)
	}
	if head.ID != id {
		return fmt.Errorf("%s: %s: %w: response id %d, want %d", KindBurrow, op, ErrDesync, head.ID, id)
	}
	if !head.OK {
		return &CallError{Kind: KindBurrow, Op: op, Message: head.Error}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s: %s: decode response: %w", KindBurrow, op, err)
		}
	}
	return nil
}

// Serve answers request lines from r on w, one response line each, until
// r ends, a quit request has been answered, or ctx ends. It is the loop of
// a peer process (interop/cmd/burrowpeer), so the subprocess peers' driver
// can run Burrow's engine too.
func (e *Engine) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if _, err := w.Write(e.HandleLine(line)); err != nil {
			return fmt.Errorf("%s: write response: %w", KindBurrow, err)
		}
		var head struct {
			Op string `json:"op"`
		}
		if json.Unmarshal(line, &head) == nil && head.Op == "quit" {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: read request: %w", KindBurrow, err)
	}
	return nil
}

// request is every argument any op takes; each op reads its own.
type request struct {
	ID         uint64    `json:"id"`
	Op         string    `json:"op"`
	Identity   Hex       `json:"identity"`
	Suite      uint16    `json:"suite"`
	Lifetime   *Lifetime `json:"lifetime"`
	GroupID    Hex       `json:"group_id"`
	KeyPackage Hex       `json:"key_package"`
	Welcome    Hex       `json:"welcome"`
	Tree       Hex       `json:"ratchet_tree"`
	LeafIndex  uint32    `json:"leaf_index"`
	Message    Hex       `json:"message"`
	Plaintext  Hex       `json:"plaintext"`
	Label      string    `json:"label"`
	Context    Hex       `json:"context"`
	Length     int       `json:"length"`
	GroupInfo  Hex       `json:"group_info"`
	PSKID      Hex       `json:"psk_id"`
	Secret     Hex       `json:"secret"`
	CommitArgs
}

// HandleLine answers one request line (a JSON object with id and op) with
// one response line, newline included.
func (e *Engine) HandleLine(line []byte) []byte {
	var req request
	var result any
	err := json.Unmarshal(line, &req)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrBadRequest, err)
	} else {
		e.mu.Lock()
		result, err = e.handle(&req)
		e.mu.Unlock()
	}
	resp := map[string]json.RawMessage{}
	if err == nil && result != nil {
		b, merr := json.Marshal(result)
		if merr == nil {
			merr = json.Unmarshal(b, &resp)
		}
		err = merr
	}
	resp["id"], _ = json.Marshal(req.ID)
	resp["ok"], _ = json.Marshal(err == nil)
	if err != nil {
		resp = map[string]json.RawMessage{"id": resp["id"], "ok": resp["ok"]}
		resp["error"], _ = json.Marshal(fmt.Sprintf("%s: %v", req.Op, err))
	}
	b, _ := json.Marshal(resp)
	return append(b, '\n')
}

func (e *Engine) handle(req *request) (any, error) {
	switch req.Op {
	case "hello":
		return HelloResult{Tool: "burrow mls (RFC 9420)"}, nil
	case "quit":
		e.group, e.pending = nil, nil
		return nil, nil
	case "create_key_package":
		return e.createKeyPackage(req)
	case "create_group":
		return e.createGroup(req)
	case "join":
		return e.join(req)
	case "external_join":
		return e.externalJoin(req)
	case "add_external_psk":
		if len(req.PSKID) == 0 || len(req.Secret) == 0 {
			return nil, fmt.Errorf("%w: psk_id and secret are required", ErrBadRequest)
		}
		entry := mls.PSKEntry{ID: bytes.Clone(req.PSKID), Secret: bytes.Clone(req.Secret)}
		e.psks = append(e.psks, entry)
		if e.group != nil {
			e.group.AddExternalPSK(entry.ID, entry.Secret)
		}
		return struct{}{}, nil
	}
	if e.group == nil {
		return nil, ErrNoGroup
	}
	g := e.group
	switch req.Op {
	case "add_member":
		return e.commit(CommitArgs{Add: []Hex{req.KeyPackage}}, e.cfg.AddWithPath)
	case "commit_update":
		return e.commit(CommitArgs{}, true)
	case "remove_member":
		return e.commit(CommitArgs{Remove: []uint32{req.LeafIndex}}, false)
	case "commit":
		return e.commit(req.CommitArgs, e.cfg.AddWithPath)
	case "merge_pending":
		if !e.held {
			return nil, ErrNoHeldCommit
		}
		if err := g.MergePendingCommit(); err != nil {
			return nil, err
		}
		e.held = false
		return EpochResult{Epoch: g.Epoch()}, nil
	case "discard_pending":
		if !e.held {
			return nil, ErrNoHeldCommit
		}
		g.DiscardPendingCommit()
		e.held = false
		return struct{}{}, nil
	case "propose_add":
		kp, err := decodeKeyPackage(req.KeyPackage)
		if err != nil {
			return nil, err
		}
		return proposed(g.ProposeAdd(kp))
	case "propose_update":
		return proposed(g.ProposeUpdate())
	case "propose_remove":
		return proposed(g.ProposeRemove(req.LeafIndex))
	case "propose_self_remove":
		return proposed(g.ProposeSelfRemove())
	case "process":
		p, err := g.ProcessMessage(req.Message)
		if err != nil {
			return nil, err
		}
		res := ProcessResult{Epoch: g.Epoch()}
		switch p.ContentType {
		case mls.ContentApplication:
			res.Kind, res.Plaintext = "application", p.ApplicationData
		case mls.ContentProposal:
			res.Kind = "proposal"
		case mls.ContentCommit:
			res.Kind, res.Epoch = "commit", p.NewEpoch
			// Another member's commit voids a held one (the engine drops
			// it when the epoch moves on).
			e.held = false
			if p.Removed {
				e.group = nil
			}
		}
		return res, nil
	case "protect":
		msg, err := g.Protect(req.Plaintext, nil)
		if err != nil {
			return nil, err
		}
		return ProtectResult{Message: msg}, nil
	case "export":
		s, err := g.Export(req.Label, req.Context, req.Length)
		if err != nil {
			return nil, err
		}
		return ExportResult{Secret: Hex(s)}, nil
	case "epoch_authenticator":
		return ValueResult{Value: g.EpochAuthenticator()}, nil
	case "state":
		res := StateResult{Epoch: g.Epoch(), OwnLeafIndex: g.LeafIndex(), Members: []Member{}}
		for _, m := range g.Members() {
			res.Members = append(res.Members, Member{LeafIndex: m.Index, Identity: m.Credential.Identity})
		}
		return res, nil
	case "group_info":
		gi, err := g.GroupInfo(true)
		if err != nil {
			return nil, err
		}
		return GroupInfoResult{GroupInfo: gi}, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownOp, req.Op)
}

func (e *Engine) groupConfig() mls.GroupConfig {
	return mls.GroupConfig{
		HandshakeWireFormat:  e.cfg.HandshakeWireFormat,
		RatchetTreeInWelcome: true, // the protocol promises the tree in every Welcome
		PaddingBlock:         e.cfg.PaddingBlock,
		Clock:                e.cfg.Now,
	}
}

func suiteOf(id uint16) (*cipher.Suite, error) {
	if id == 0 {
		id = Suite0001
	}
	s, err := cipher.New(cipher.CipherSuite(id))
	if err != nil {
		return nil, fmt.Errorf("%w: suite 0x%04x: %w", ErrBadRequest, id, err)
	}
	return s, nil
}

func basicCredential(identity []byte) mls.Credential {
	return mls.Credential{Type: mls.CredentialBasic, Identity: bytes.Clone(identity)}
}

// capabilities are what the engine's leaves advertise: the suite in use,
// basic credentials, and SelfRemove (which a group may use only when every
// member lists it).
func capabilities(cs mls.CipherSuite) mls.Capabilities {
	return mls.Capabilities{
		Versions:     []mls.ProtocolVersion{mls.MLS10},
		CipherSuites: []mls.CipherSuite{cs},
		Proposals:    []mls.ProposalType{mls.ProposalSelfRemove},
		Credentials:  []mls.CredentialType{mls.CredentialBasic},
	}
}

func (e *Engine) leafParams(identity []byte, cs mls.CipherSuite) mls.LeafParams {
	return mls.LeafParams{
		Credential: basicCredential(identity), Capabilities: capabilities(cs),
		Lifetime: mls.Lifetime{NotBefore: 0, NotAfter: math.MaxUint64},
	}
}

// useGroup installs a group this engine created or joined and registers
// the external PSKs it knows.
func (e *Engine) useGroup(g *mls.Group) {
	for _, p := range e.psks {
		g.AddExternalPSK(p.ID, p.Secret)
	}
	e.group, e.held = g, false
}

func (e *Engine) createKeyPackage(req *request) (any, error) {
	suite, err := suiteOf(req.Suite)
	if err != nil {
		return nil, err
	}
	signer, err := suite.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	var life mls.Lifetime
	if req.Lifetime != nil {
		life = mls.Lifetime{NotBefore: req.Lifetime.NotBefore, NotAfter: req.Lifetime.NotAfter}
	} else {
		// An hour back absorbs clock skew between the publisher and whoever adds it.
		now := e.cfg.Now()
		life = mls.Lifetime{
			NotBefore: uint64(now.Add(-time.Hour).Unix()),
			NotAfter:  uint64(now.Add(e.cfg.KeyPackageLifetime).Unix()),
		}
	}
	kp, priv, err := mls.NewKeyPackage(suite, signer, mls.KeyPackageParams{
		Credential:   basicCredential(req.Identity),
		Capabilities: capabilities(suite.ID()),
		Lifetime:     life,
	})
	if err != nil {
		return nil, err
	}
	bare, err := kp.Bytes()
	if err != nil {
		return nil, err
	}
	ref, err := suite.KeyPackageRef(bare)
	if err != nil {
		return nil, err
	}
	framed, err := mls.Marshal(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp})
	if err != nil {
		return nil, err
	}
	e.pending = append(e.pending, pendingKeyPackage{ref: ref, kp: kp, priv: priv, signer: signer})
	return KeyPackageResult{
		KeyPackage: framed, KeyPackageBare: bare, KeyPackageRef: ref,
		NotBefore: Uint64(life.NotBefore), NotAfter: Uint64(life.NotAfter),
	}, nil
}

func (e *Engine) createGroup(req *request) (any, error) {
	suite, err := suiteOf(req.Suite)
	if err != nil {
		return nil, err
	}
	signer, err := suite.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	g, err := mls.CreateGroup(suite.ID(), req.GroupID, signer, e.leafParams(req.Identity, suite.ID()), nil, e.groupConfig())
	if err != nil {
		return nil, err
	}
	e.useGroup(g)
	return EpochResult{Epoch: g.Epoch()}, nil
}

// join finds the pending KeyPackage the Welcome is addressed to and joins
// with the engine's full checks (tree, signatures, lifetimes, confirmation
// tag).
func (e *Engine) join(req *request) (any, error) {
	m, err := mls.DecodeMLSMessage(req.Welcome)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != mls.WireFormatWelcome {
		return nil, fmt.Errorf("%w: wire format %d is not a Welcome", ErrBadRequest, m.WireFormat)
	}
	opts := mls.JoinOptions{PSKs: e.psks}
	if len(req.Tree) > 0 {
		if opts.RatchetTree, err = mls.DecodeRatchetTree(req.Tree); err != nil {
			return nil, err
		}
	}
	for i, p := range e.pending {
		if _, err := m.Welcome.FindSecrets(p.ref); err != nil {
			continue
		}
		g, err := mls.JoinFromWelcome(req.Welcome, p.kp, p.priv, p.signer, opts, e.groupConfig())
		if err != nil {
			return nil, err
		}
		e.pending = append(e.pending[:i:i], e.pending[i+1:]...)
		e.useGroup(g)
		return EpochResult{Epoch: g.Epoch()}, nil
	}
	return nil, fmt.Errorf("%w: the Welcome names none of this engine's KeyPackages", mls.ErrNotInWelcome)
}

// externalJoin joins by external commit from a GroupInfo with a fresh
// signature key; the group is in the new epoch at once.
func (e *Engine) externalJoin(req *request) (any, error) {
	if e.group != nil {
		return nil, ErrHaveGroup
	}
	m, err := mls.DecodeMLSMessage(req.GroupInfo)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != mls.WireFormatGroupInfo {
		return nil, fmt.Errorf("%w: wire format %d is not a GroupInfo", ErrBadRequest, m.WireFormat)
	}
	suite, err := suiteOf(uint16(m.GroupInfo.GroupContext.CipherSuite))
	if err != nil {
		return nil, err
	}
	signer, err := suite.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	opts := mls.ExternalJoinOptions{JoinOptions: mls.JoinOptions{PSKs: e.psks}}
	g, commit, err := mls.JoinExternal(req.GroupInfo, signer, e.leafParams(req.Identity, suite.ID()), opts, e.groupConfig())
	if err != nil {
		return nil, err
	}
	e.useGroup(g)
	return CommitResult{Commit: commit, Epoch: g.Epoch()}, nil
}

// proposed answers a propose_* op.
func proposed(msg, _ []byte, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return ProtectResult{Message: msg}, nil
}

// commit commits the proposals stored this epoch (by reference) and those
// of args (by value), with an UpdatePath when one is required or forcePath
// is set. The committer applies it at once unless args.Hold asks to wait
// for merge_pending or discard_pending.
func (e *Engine) commit(args CommitArgs, forcePath bool) (any, error) {
	g := e.group
	if e.held {
		return nil, ErrHeldCommit
	}
	var props []mls.Proposal
	for _, b := range args.Add {
		kp, err := decodeKeyPackage(b)
		if err != nil {
			return nil, err
		}
		props = append(props, mls.Proposal{Type: mls.ProposalAdd, Add: &mls.Add{KeyPackage: *kp}})
	}
	for _, leaf := range args.Remove {
		props = append(props, mls.Proposal{Type: mls.ProposalRemove, Remove: &mls.Remove{Removed: leaf}})
	}
	psk := func(id mls.PreSharedKeyID) error {
		suite, err := suiteOf(uint16(g.CipherSuite()))
		if err != nil {
			return err
		}
		id.PSKNonce = make([]byte, suite.Nh())
		if _, err := rand.Read(id.PSKNonce); err != nil {
			return err
		}
		props = append(props, mls.Proposal{Type: mls.ProposalPSK, PreSharedKey: &mls.PreSharedKey{PSK: id}})
		return nil
	}
	for _, id := range args.ExternalPSKs {
		if err := psk(mls.PreSharedKeyID{Type: mls.PSKExternal, PSKID: id}); err != nil {
			return nil, err
		}
	}
	for _, epoch := range args.ResumptionPSKEpochs {
		id := mls.PreSharedKeyID{Type: mls.PSKResumption, Usage: mls.ResumptionApplication, PSKGroupID: g.GroupID(), PSKEpoch: epoch}
		if err := psk(id); err != nil {
			return nil, err
		}
	}
	opts := mls.CommitOptions{Proposals: props, ForcePath: forcePath}
	if args.PublicMessage {
		opts.WireFormat = mls.WireFormatPublicMessage
	}
	out, err := g.Commit(opts)
	if err != nil {
		return nil, err
	}
	if args.Hold {
		e.held = true
	} else if err := g.MergePendingCommit(); err != nil {
		return nil, err
	}
	return CommitResult{Commit: out.Commit, Welcome: out.Welcome, Epoch: out.NewEpoch}, nil
}

// decodeKeyPackage accepts a KeyPackage bare or framed as an MLSMessage.
func decodeKeyPackage(b []byte) (*mls.KeyPackage, error) {
	// Bytes 2-3 are the wire format of a framed one (5) and the suite of a
	// bare one; no suite 5 is implemented, so 5 means framed.
	if len(b) >= 4 && b[2] == 0 && b[3] == byte(mls.WireFormatKeyPackage) {
		m, err := mls.DecodeMLSMessage(b)
		if err != nil {
			return nil, fmt.Errorf("%w: framed KeyPackage: %w", ErrBadRequest, err)
		}
		return m.KeyPackage, nil
	}
	kp, err := mls.DecodeKeyPackage(b)
	if err != nil {
		return nil, fmt.Errorf("%w: KeyPackage: %w", ErrBadRequest, err)
	}
	return kp, nil
}
