// Command peer is an MLS group member backed by github.com/thomas-vilte/mls-go,
// driven over stdin/stdout with the line-delimited JSON protocol described in
// interop/README.md. Burrow's interop tests start it as a subprocess so that
// bytes produced by an implementation nobody on the team wrote cross a process
// boundary. It lives in its own module so the relay binary never links mls-go.
//
// One process holds at most one group membership and any number of pending
// KeyPackages (whose private keys it needs to join from a Welcome).
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/thomas-vilte/mls-go/ciphersuite"
	"github.com/thomas-vilte/mls-go/credentials"
	"github.com/thomas-vilte/mls-go/framing"
	"github.com/thomas-vilte/mls-go/group"
	"github.com/thomas-vilte/mls-go/keypackages"
	"github.com/thomas-vilte/mls-go/treesync"
)

// toolVersion names the library this peer wraps; it is reported by the hello op
// and written into fixtures.
const toolVersion = "github.com/thomas-vilte/mls-go v1.6.0"

// Errors a driver may see in the "error" field; the text is for people.
var (
	errNoGroup       = errors.New("no group: create_group or join first")
	errHaveGroup     = errors.New("this peer already holds a group")
	errUnknownOp     = errors.New("unknown op")
	errNoPendingKP   = errors.New("no pending KeyPackage matches the Welcome")
	errBadMessage    = errors.New("unexpected message type")
	errOutOfBandTree = errors.New("mls-go joins only with the ratchet_tree extension in the Welcome's GroupInfo")
	errNoHeld        = errors.New("no held commit")
	errHeld          = errors.New("a held commit is pending: merge_pending or discard_pending first")
	// mls-go v1.6.0 knows proposal types 1-7 only (group/types.go); the
	// MLS extensions' SelfRemove (0x000a) is not among them.
	errNoSelfRemove = errors.New("unsupported by mls-go v1.6.0 (no SelfRemove proposal type)")
	errHoldWithAdd  = errors.New("this peer makes a held commit's Welcome only after merging, so hold cannot add members")
)

// hexBytes is a byte string carried as lowercase hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("hex field: %w", err)
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hex field: %w", err)
	}
	*h = v
	return nil
}

type request struct {
	ID uint64 `json:"id"`
	Op string `json:"op"`
	// Every argument of every op; each op reads the ones it needs.
	Identity    hexBytes  `json:"identity"`
	Suite       uint16    `json:"suite"`
	GroupID     hexBytes  `json:"group_id"`
	KeyPackage  hexBytes  `json:"key_package"`
	Welcome     hexBytes  `json:"welcome"`
	RatchetTree hexBytes  `json:"ratchet_tree"`
	LeafIndex   *uint32   `json:"leaf_index"`
	Message     hexBytes  `json:"message"`
	Plaintext   hexBytes  `json:"plaintext"`
	Label       string    `json:"label"`
	Context     hexBytes  `json:"context"`
	Length      int       `json:"length"`
	Lifetime    *lifetime `json:"lifetime"`
	Repeat      int       `json:"repeat"`
	GroupInfo   hexBytes  `json:"group_info"`
	PSKID       hexBytes  `json:"psk_id"`
	Secret      hexBytes  `json:"secret"`
	Hold        bool      `json:"hold"`
	// commit's proposals by value.
	Add                 []hexBytes `json:"add"`
	Remove              []uint32   `json:"remove"`
	ExternalPSKs        []hexBytes `json:"external_psks"`
	ResumptionPSKEpochs []uint64   `json:"resumption_psk_epochs"`
}

type lifetime struct {
	NotBefore uint64 `json:"not_before"`
	NotAfter  uint64 `json:"not_after"`
}

type member struct {
	LeafIndex uint32   `json:"leaf_index"`
	Identity  hexBytes `json:"identity"`
}

type pendingKP struct {
	kp   *keypackages.KeyPackage
	priv *keypackages.KeyPackagePrivateKeys
}

// peer is the state of one process: its pending KeyPackages and its group.
type peer struct {
	pending []pendingKP
	g       *group.Group
	sigKey  *ciphersuite.SignaturePrivateKey
	// held is a commit made with hold, waiting for merge_pending or
	// discard_pending.
	held *group.StagedCommit
	// psks are the external PSKs by id, loaded into every group this
	// process joins.
	psks map[string][]byte
	// lastElapsed is how long the previous op (other than elapsed) took
	// inside this process, so a benchmark can leave out the pipe and JSON.
	lastElapsed time.Duration
}

func main() {
	// Logs go to stderr so stdout carries protocol lines only.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(logger)
	if err := serve(context.Background(), os.Stdin, os.Stdout); err != nil {
		logger.Error("peer stopped", "err", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, in io.Reader, out io.Writer) error {
	p := &peer{psks: map[string][]byte{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var req request
		resp := map[string]any{}
		if err := json.Unmarshal(line, &req); err != nil {
			resp["id"] = req.ID
			resp["ok"] = false
			resp["error"] = fmt.Sprintf("bad request: %v", err)
		} else {
			start := time.Now()
			res, err := p.handle(ctx, &req)
			if req.Op != "elapsed" {
				p.lastElapsed = time.Since(start)
			}
			for k, v := range res {
				resp[k] = v
			}
			resp["id"] = req.ID
			if err != nil {
				resp["ok"] = false
				resp["error"] = err.Error()
			} else {
				resp["ok"] = true
			}
		}
		if err := enc.Encode(resp); err != nil {
			return fmt.Errorf("write response: %w", err)
		}
		if req.Op == "quit" {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	return nil
}

func (p *peer) handle(ctx context.Context, r *request) (map[string]any, error) {
	switch r.Op {
	case "hello":
		return map[string]any{"tool": toolVersion}, nil
	case "quit":
		return nil, nil
	case "create_key_package":
		return p.createKeyPackage(r)
	case "create_group":
		return p.createGroup(r)
	case "join":
		return p.join(ctx, r)
	case "bench_join":
		return p.benchJoin(ctx, r)
	case "elapsed":
		return map[string]any{"elapsed_ns": p.lastElapsed.Nanoseconds()}, nil
	case "heap":
		// Live heap after a full collection, for memory-per-member figures.
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return map[string]any{"heap_bytes": ms.HeapAlloc}, nil
	case "add_external_psk":
		if len(r.PSKID) == 0 || len(r.Secret) == 0 {
			return nil, errors.New("add_external_psk: psk_id and secret are required")
		}
		p.psks[string(r.PSKID)] = bytes.Clone(r.Secret)
		if p.g != nil {
			p.g.LoadPsk(bytes.Clone(r.PSKID), bytes.Clone(r.Secret))
		}
		return map[string]any{}, nil
	case "external_join":
		return p.externalJoin(r)
	}
	if p.g == nil {
		return nil, fmt.Errorf("%s: %w", r.Op, errNoGroup)
	}
	switch r.Op {
	case "add_member":
		return p.commitWith(&request{Add: []hexBytes{r.KeyPackage}, Hold: r.Hold})
	case "commit_update":
		return p.commitWith(&request{Hold: r.Hold})
	case "remove_member":
		if r.LeafIndex == nil {
			return nil, errors.New("remove_member: leaf_index is required")
		}
		return p.commitWith(&request{Remove: []uint32{*r.LeafIndex}, Hold: r.Hold})
	case "commit":
		return p.commitWith(r)
	case "merge_pending":
		if p.held == nil {
			return nil, fmt.Errorf("merge_pending: %w", errNoHeld)
		}
		staged := p.held
		p.held = nil
		if err := p.g.MergeCommit(staged); err != nil {
			return nil, fmt.Errorf("merge_pending: %w", err)
		}
		return map[string]any{"epoch": p.g.Epoch().AsUint64()}, nil
	case "discard_pending":
		if p.held == nil {
			return nil, fmt.Errorf("discard_pending: %w", errNoHeld)
		}
		p.held = nil
		if err := p.g.DiscardPendingCommit(); err != nil {
			return nil, fmt.Errorf("discard_pending: %w", err)
		}
		return map[string]any{}, nil
	case "propose_add":
		kp, err := bareKeyPackage(r.KeyPackage)
		if err != nil {
			return nil, fmt.Errorf("propose_add: %w", err)
		}
		return p.propose(p.g.AddMember(kp))
	case "propose_remove":
		if r.LeafIndex == nil {
			return nil, errors.New("propose_remove: leaf_index is required")
		}
		return p.propose(p.g.RemoveMember(group.LeafNodeIndex(*r.LeafIndex)))
	case "propose_update":
		return p.propose(p.g.SelfUpdate(p.sigKey))
	case "propose_self_remove":
		return nil, fmt.Errorf("propose_self_remove: %w", errNoSelfRemove)
	case "process":
		return p.process(r)
	case "protect":
		pm, err := p.g.SendMessage(r.Plaintext, p.sigKey)
		if err != nil {
			return nil, fmt.Errorf("protect: %w", err)
		}
		return map[string]any{"message": hexBytes(framing.NewMLSMessagePrivate(pm).Marshal())}, nil
	case "export":
		s, err := p.g.Export(r.Label, r.Context, r.Length)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		return map[string]any{"secret": hexBytes(s)}, nil
	case "epoch_authenticator":
		return map[string]any{"value": hexBytes(p.g.EpochAuthenticator())}, nil
	case "state":
		return p.state(), nil
	case "group_info":
		gi, err := p.g.GetGroupInfoWithOptions(p.sigKey, group.WithRatchetTree(true))
		if err != nil {
			return nil, fmt.Errorf("group_info: %w", err)
		}
		return map[string]any{"group_info": hexBytes((&framing.MLSMessage{GroupInfo: gi.Marshal()}).Marshal())}, nil
	}
	return nil, fmt.Errorf("%q: %w", r.Op, errUnknownOp)
}

func suiteOf(r *request) ciphersuite.CipherSuite {
	if r.Suite == 0 {
		return ciphersuite.MLS128DHKEMX25519
	}
	return ciphersuite.CipherSuite(r.Suite)
}

// newKeyPackage makes a KeyPackage with a fresh signature key; the lifetime is
// mls-go's default (1 h back, 83 days forward) unless the request names one.
func newKeyPackage(r *request) (pendingKP, error) {
	if len(r.Identity) == 0 {
		return pendingKP{}, errors.New("identity is required")
	}
	cs := suiteOf(r)
	cred, _, err := credentials.GenerateCredentialWithKeyForCS(r.Identity, cs)
	if err != nil {
		return pendingKP{}, fmt.Errorf("credential: %w", err)
	}
	var opts []keypackages.GenerateOption
	if r.Lifetime != nil {
		opts = append(opts, keypackages.WithLifetime(r.Lifetime.NotBefore, r.Lifetime.NotAfter))
	}
	kp, priv, err := keypackages.Generate(cred, cs, opts...)
	if err != nil {
		return pendingKP{}, fmt.Errorf("generate key package: %w", err)
	}
	return pendingKP{kp: kp, priv: priv}, nil
}

func (p *peer) createKeyPackage(r *request) (map[string]any, error) {
	e, err := newKeyPackage(r)
	if err != nil {
		return nil, fmt.Errorf("create_key_package: %w", err)
	}
	p.pending = append(p.pending, e)
	bare := e.kp.Marshal()
	cs := e.kp.CipherSuite
	// kp.Hash() in mls-go v1.6.0 is a plain SHA-256 of the encoding, not the
	// RFC 9420 KeyPackageRef; the labelled RefHash is what Welcomes carry.
	ref := ciphersuite.MakeKeyPackageRef(bare, cs.HashFunction()).AsSlice()
	res := map[string]any{
		"key_package":      hexBytes((&framing.MLSMessage{KeyPackage: bare}).Marshal()),
		"key_package_bare": hexBytes(bare),
		"key_package_ref":  hexBytes(ref),
	}
	if lt := e.kp.LeafNode.Lifetime; lt != nil {
		res["not_before"] = lt.NotBefore
		res["not_after"] = lt.NotAfter
	}
	return res, nil
}

func (p *peer) createGroup(r *request) (map[string]any, error) {
	if p.g != nil {
		return nil, fmt.Errorf("create_group: %w", errHaveGroup)
	}
	if len(r.GroupID) == 0 {
		return nil, errors.New("create_group: group_id is required")
	}
	e, err := newKeyPackage(r)
	if err != nil {
		return nil, fmt.Errorf("create_group: %w", err)
	}
	g, err := group.NewGroup(group.NewGroupID(r.GroupID), suiteOf(r), e.kp, e.priv)
	if err != nil {
		return nil, fmt.Errorf("create_group: %w", err)
	}
	p.g, p.sigKey = g, e.priv.GetSignaturePrivateKey()
	p.loadPSKs()
	return map[string]any{"epoch": g.Epoch().AsUint64()}, nil
}

func (p *peer) join(ctx context.Context, r *request) (map[string]any, error) {
	if p.g != nil {
		return nil, fmt.Errorf("join: %w", errHaveGroup)
	}
	if len(r.RatchetTree) > 0 {
		return nil, fmt.Errorf("join: %w", errOutOfBandTree)
	}
	w, err := parseWelcome(r.Welcome)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	var lastErr error = errNoPendingKP
	for i, e := range p.pending {
		g, err := group.JoinFromWelcomeWithContext(ctx, w, e.kp, e.priv, p.psks)
		if err != nil {
			lastErr = err
			continue
		}
		p.g, p.sigKey = g, e.priv.GetSignaturePrivateKey()
		p.loadPSKs()
		p.pending = append(p.pending[:i], p.pending[i+1:]...)
		return map[string]any{"epoch": g.Epoch().AsUint64()}, nil
	}
	return nil, fmt.Errorf("join: %w", lastErr)
}

// benchJoin joins from one Welcome repeat times with the first pending
// KeyPackage it names, timing each join (parsing included) inside this
// process. The first group is kept, as join would; the KeyPackage is not
// consumed until then, and the later joins only measure.
func (p *peer) benchJoin(ctx context.Context, r *request) (map[string]any, error) {
	if p.g != nil {
		return nil, fmt.Errorf("bench_join: %w", errHaveGroup)
	}
	if r.Repeat < 1 {
		return nil, errors.New("bench_join: repeat must be at least 1")
	}
	times := make([]int64, 0, r.Repeat)
	cpu := make([]int64, 0, r.Repeat)
	var first *group.Group
	var firstKP int
	for range r.Repeat {
		start, cpuStart := time.Now(), cpuTime()
		w, err := parseWelcome(r.Welcome)
		if err != nil {
			return nil, fmt.Errorf("bench_join: %w", err)
		}
		var g *group.Group
		var lastErr error = errNoPendingKP
		for i, e := range p.pending {
			if g, lastErr = group.JoinFromWelcomeWithContext(ctx, w, e.kp, e.priv, nil); lastErr == nil {
				firstKP = i
				break
			}
		}
		elapsed, cpuUsed := time.Since(start), cpuTime()-cpuStart
		if g == nil {
			return nil, fmt.Errorf("bench_join: %w", lastErr)
		}
		times = append(times, elapsed.Nanoseconds())
		cpu = append(cpu, cpuUsed.Nanoseconds())
		if first == nil {
			first = g
		}
	}
	p.g, p.sigKey = first, p.pending[firstKP].priv.GetSignaturePrivateKey()
	p.pending = append(p.pending[:firstKP], p.pending[firstKP+1:]...)
	return map[string]any{"epoch": first.Epoch().AsUint64(), "elapsed_ns": times, "cpu_ns": cpu}, nil
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func parseWelcome(b []byte) (*group.Welcome, error) {
	if msg, err := framing.UnmarshalMLSMessage(b); err == nil {
		if len(msg.Welcome) == 0 {
			return nil, fmt.Errorf("welcome: %w", errBadMessage)
		}
		return group.UnmarshalWelcome(msg.Welcome)
	}
	return group.UnmarshalWelcome(b)
}

// bareKeyPackage accepts a KeyPackage either bare or framed as an MLSMessage.
func bareKeyPackage(b []byte) (*keypackages.KeyPackage, error) {
	if msg, err := framing.UnmarshalMLSMessage(b); err == nil && len(msg.KeyPackage) > 0 {
		b = msg.KeyPackage
	}
	kp, err := keypackages.UnmarshalKeyPackage(b)
	if err != nil {
		return nil, fmt.Errorf("key package: %w", err)
	}
	return kp, nil
}

// propose sends a proposal made (and stored) by the group as a signed
// PublicMessage, mls-go's only framing for proposals.
func (p *peer) propose(prop *group.Proposal, err error) (map[string]any, error) {
	if err != nil {
		return nil, fmt.Errorf("proposal: %w", err)
	}
	msg, err := p.g.SignProposalAsPublicMessage(prop, p.sigKey)
	if err != nil {
		return nil, fmt.Errorf("sign proposal: %w", err)
	}
	return map[string]any{"message": hexBytes(msg)}, nil
}

// pskNonce is a fresh nonce of the KDF's output length (RFC 9420 section 8.4).
func (p *peer) pskNonce() ([]byte, error) {
	n := make([]byte, p.g.CipherSuite().HashLength())
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("psk nonce: %w", err)
	}
	return n, nil
}

// commitWith stores the request's by-value proposals beside those received
// in this epoch and commits them all (mls-go sends received proposals by
// reference and its own by value). A failed commit drops the by-value ones.
func (p *peer) commitWith(r *request) (map[string]any, error) {
	if p.held != nil {
		return nil, fmt.Errorf("commit: %w", errHeld)
	}
	before := len(p.g.Proposals().Proposals)
	undo := func(err error) (map[string]any, error) {
		store := p.g.Proposals()
		store.Proposals = store.Proposals[:before]
		return nil, err
	}
	for _, b := range r.Add {
		kp, err := bareKeyPackage(b)
		if err != nil {
			return undo(fmt.Errorf("commit: %w", err))
		}
		if _, err := p.g.AddMember(kp); err != nil {
			return undo(fmt.Errorf("commit: add: %w", err))
		}
	}
	for _, leaf := range r.Remove {
		if _, err := p.g.RemoveMember(group.LeafNodeIndex(leaf)); err != nil {
			return undo(fmt.Errorf("commit: remove: %w", err))
		}
	}
	for _, id := range r.ExternalPSKs {
		nonce, err := p.pskNonce()
		if err != nil {
			return undo(err)
		}
		p.g.Proposals().AddProposal(&group.Proposal{
			Type:         group.ProposalTypePreSharedKey,
			PreSharedKey: &group.PreSharedKeyProposal{PskType: 1, PskID: group.PskID{PskType: 1, ID: bytes.Clone(id), Nonce: nonce}},
		}, p.g.OwnLeafIndex())
	}
	for _, epoch := range r.ResumptionPSKEpochs {
		nonce, err := p.pskNonce()
		if err != nil {
			return undo(err)
		}
		p.g.Proposals().AddProposal(group.NewResumptionPSKProposal(p.g.ID().AsSlice(), epoch, nonce), p.g.OwnLeafIndex())
	}
	staged, err := p.g.Commit(p.sigKey, p.sigKey.PublicKey(), nil)
	if err != nil {
		return undo(fmt.Errorf("commit: %w", err))
	}
	// The Welcome goes to every member the commit adds, by value or by
	// reference.
	var added []*keypackages.KeyPackage
	for _, prop := range staged.Proposals() {
		if prop.Type == group.ProposalTypeAdd && prop.Add != nil {
			added = append(added, prop.Add.KeyPackage)
		}
	}
	if r.Hold && len(added) > 0 {
		_ = p.g.DiscardPendingCommit()
		return undo(fmt.Errorf("commit: %w", errHoldWithAdd))
	}
	commit := framing.NewMLSMessagePublic(&framing.PublicMessage{
		Content:       staged.AuthenticatedContent().Content,
		Auth:          staged.AuthenticatedContent().Auth,
		MembershipTag: staged.MembershipTag(),
	}).Marshal()
	if r.Hold {
		p.held = staged
		return map[string]any{"commit": hexBytes(commit), "epoch": p.g.Epoch().AsUint64() + 1}, nil
	}
	joinerSecret := staged.JoinerSecret()
	if err := p.g.MergeCommit(staged); err != nil {
		return nil, fmt.Errorf("merge own commit: %w", err)
	}
	res := map[string]any{"commit": hexBytes(commit), "epoch": p.g.Epoch().AsUint64()}
	if len(added) > 0 {
		w, err := p.g.CreateWelcomeWithOpts(added, p.sigKey,
			group.WithJoinerSecret(joinerSecret),
			group.WithPSKIDs(staged.PskIDs()),
			group.WithPSKSecret(staged.RawPskSecret()),
			group.WithStagedCommit(staged),
			group.WithGroupInfoOptions(group.WithRatchetTree(true)))
		if err != nil {
			return nil, fmt.Errorf("welcome: %w", err)
		}
		res["welcome"] = hexBytes((&framing.MLSMessage{Welcome: w.Marshal()}).Marshal())
	}
	return res, nil
}

// externalJoin joins by external commit from a GroupInfo (framed or bare)
// with a fresh credential; the group is in the new epoch at once.
func (p *peer) externalJoin(r *request) (map[string]any, error) {
	if p.g != nil {
		return nil, fmt.Errorf("external_join: %w", errHaveGroup)
	}
	b := []byte(r.GroupInfo)
	if msg, err := framing.UnmarshalMLSMessage(b); err == nil && len(msg.GroupInfo) > 0 {
		b = msg.GroupInfo
	}
	gi, err := group.UnmarshalGroupInfo(b)
	if err != nil {
		return nil, fmt.Errorf("external_join: group info: %w", err)
	}
	if len(r.Identity) == 0 {
		return nil, errors.New("external_join: identity is required")
	}
	cs := gi.GroupContext.CipherSuite
	cred, sigKey, err := credentials.GenerateCredentialWithKeyForCS(r.Identity, cs)
	if err != nil {
		return nil, fmt.Errorf("external_join: credential: %w", err)
	}
	g, staged, err := group.ExternalCommit(gi, cs, sigKey, sigKey.PublicKey(), nil, cred.Credential)
	if err != nil {
		return nil, fmt.Errorf("external_join: %w", err)
	}
	p.g, p.sigKey = g, sigKey
	p.loadPSKs()
	ac := staged.AuthenticatedContent()
	commit := framing.NewMLSMessagePublic(&framing.PublicMessage{Content: ac.Content, Auth: ac.Auth}).Marshal()
	return map[string]any{"commit": hexBytes(commit), "epoch": g.Epoch().AsUint64()}, nil
}

// loadPSKs gives the group every external PSK this process knows.
func (p *peer) loadPSKs() {
	for id, secret := range p.psks {
		p.g.LoadPsk([]byte(id), bytes.Clone(secret))
	}
}

func (p *peer) process(r *request) (map[string]any, error) {
	msg, err := framing.UnmarshalMLSMessage(r.Message)
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	if pm, ok := msg.AsPrivate(); ok && pm.ContentType == framing.ContentTypeProposal {
		if err := p.g.ProcessPrivateMessage(pm); err != nil {
			return nil, fmt.Errorf("process proposal: %w", err)
		}
		return map[string]any{"kind": "proposal", "epoch": p.g.Epoch().AsUint64()}, nil
	}
	if pm, ok := msg.AsPrivate(); ok && pm.ContentType == framing.ContentTypeApplication {
		pt, _, _, err := p.g.ReceiveApplicationMessage(pm)
		if err != nil {
			return nil, fmt.Errorf("process application: %w", err)
		}
		return map[string]any{"kind": "application", "epoch": p.g.Epoch().AsUint64(), "plaintext": hexBytes(pt)}, nil
	}
	ac, err := p.authenticated(msg)
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	switch ac.Content.ContentType() {
	case framing.ContentTypeCommit:
		if err := p.g.ProcessReceivedCommit(ac, treesync.LeafIndex(ac.Content.Sender.LeafIndex), p.g.MyLeafEncryptionKey()); err != nil {
			return nil, fmt.Errorf("process commit: %w", err)
		}
		p.held = nil
		return map[string]any{"kind": "commit", "epoch": p.g.Epoch().AsUint64()}, nil
	case framing.ContentTypeProposal:
		pub, ok := msg.AsPublic()
		if !ok {
			return nil, fmt.Errorf("process: private proposals: %w", errBadMessage)
		}
		if err := p.g.ProcessPublicMessage(pub); err != nil {
			return nil, fmt.Errorf("process proposal: %w", err)
		}
		return map[string]any{"kind": "proposal", "epoch": p.g.Epoch().AsUint64()}, nil
	}
	return nil, fmt.Errorf("process: content type %d: %w", ac.Content.ContentType(), errBadMessage)
}

// authenticated opens a handshake message the way mls-go's own Client does:
// a PublicMessage's membership tag is checked here, a PrivateMessage is
// decrypted with the current epoch's keys; the signature is checked later by
// ProcessReceivedCommit.
func (p *peer) authenticated(msg *framing.MLSMessage) (*framing.AuthenticatedContent, error) {
	g := p.g
	if pub, ok := msg.AsPublic(); ok {
		if err := pub.VerifyMembershipTagWithContext(g.CipherSuite(), g.EpochSecrets().MembershipKey, g.GroupContext().Marshal()); err != nil {
			return nil, fmt.Errorf("membership tag: %w", err)
		}
		return &framing.AuthenticatedContent{
			WireFormat:   framing.WireFormatPublicMessage,
			Content:      pub.Content,
			Auth:         pub.Auth,
			GroupContext: g.GroupContext().Marshal(),
		}, nil
	}
	if priv, ok := msg.AsPrivate(); ok {
		ac, err := framing.Decrypt(priv, framing.DecryptParams{
			CipherSuite:      g.CipherSuite(),
			SenderDataSecret: g.EpochSecrets().SenderDataSecret,
			SecretTree:       g.SecretTree(),
			GroupContext:     g.GroupContext().Marshal(),
		})
		if err != nil {
			return nil, fmt.Errorf("decrypt: %w", err)
		}
		ac.WireFormat = framing.WireFormatPrivateMessage
		return ac, nil
	}
	return nil, errBadMessage
}

func (p *peer) state() map[string]any {
	members := []member{}
	for _, m := range p.g.GetMembers() {
		if m == nil || m.Credential == nil {
			continue
		}
		members = append(members, member{LeafIndex: uint32(m.LeafIndex), Identity: m.Credential.Identity})
	}
	// GetMembers comes from a map; the protocol promises leaf order.
	slices.SortFunc(members, func(a, b member) int { return cmp.Compare(a.LeafIndex, b.LeafIndex) })
	return map[string]any{"epoch": p.g.Epoch().AsUint64(), "members": members, "own_leaf_index": uint32(p.g.OwnLeafIndex())}
}
