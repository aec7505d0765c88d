package interop

import (
	"bufio"
	"bytes"
	"context"
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
	}
	if e.group == nil {
		return nil, ErrNoGroup
	}
	g := e.group
	switch req.Op {
	case "add_member":
		kp, err := decodeKeyPackage(req.KeyPackage)
		if err != nil {
			return nil, err
		}
		return e.commit(mls.CommitOptions{
			Proposals: []mls.Proposal{{Type: mls.ProposalAdd, Add: &mls.Add{KeyPackage: *kp}}},
			ForcePath: e.cfg.AddWithPath,
		})
	case "commit_update":
		return e.commit(mls.CommitOptions{ForcePath: true})
	case "remove_member":
		return e.commit(mls.CommitOptions{
			Proposals: []mls.Proposal{{Type: mls.ProposalRemove, Remove: &mls.Remove{Removed: req.LeafIndex}}},
		})
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
		LeafRules:            mls.LeafNodeRules{Now: e.cfg.Now()},
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
		Credential: basicCredential(req.Identity),
		Capabilities: mls.Capabilities{
			Versions:     []mls.ProtocolVersion{mls.MLS10},
			CipherSuites: []mls.CipherSuite{suite.ID()},
			Credentials:  []mls.CredentialType{mls.CredentialBasic},
		},
		Lifetime: life,
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
	g, err := mls.CreateGroup(suite.ID(), req.GroupID, signer,
		mls.LeafParams{Credential: basicCredential(req.Identity), Lifetime: mls.Lifetime{NotBefore: 0, NotAfter: math.MaxUint64}},
		nil, e.groupConfig())
	if err != nil {
		return nil, err
	}
	e.group = g
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
	var opts mls.JoinOptions
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
		e.group = g
		return EpochResult{Epoch: g.Epoch()}, nil
	}
	return nil, fmt.Errorf("%w: the Welcome names none of this engine's KeyPackages", mls.ErrNotInWelcome)
}

// commit creates a commit and applies it at once, as the protocol says
// every committer does.
func (e *Engine) commit(opts mls.CommitOptions) (any, error) {
	g := e.group
	out, err := g.Commit(opts)
	if err != nil {
		return nil, err
	}
	if err := g.MergePendingCommit(); err != nil {
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
