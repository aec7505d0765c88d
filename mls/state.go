package mls

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/keyschedule"
	"github.com/burrow-relay/burrow/mls/secrettree"
	"github.com/burrow-relay/burrow/mls/treemath"
)

// ErrState means serialized group state is malformed or inconsistent.
var ErrState = errors.New("mls: invalid serialized group state")

// stateMagic opens every serialized group state; the last two bytes are
// the format version.
var stateMagic = []byte{'B', 'M', 'L', 'S', 0, 1}

// MarshalState serializes the group's whole state, so that a member can
// stop and resume with RestoreGroup: the epoch (GroupContext, ratchet
// tree, transcript hashes, key schedule secrets, secret tree), the private
// keys this member holds, the proposals of the current epoch, the pending
// commit, the PSKs, and the kept past epochs. A group restored from the
// bytes serializes to the same bytes and behaves the same. The local
// configuration and the signature key are not included: RestoreGroup takes
// them. The bytes are key material; protect them as the group itself. An
// inactive group has nothing to resume and is refused.
func (g *Group) MarshalState() ([]byte, error) {
	if g.inactive != nil {
		return nil, g.inactive
	}
	w := codec.NewWriter(1024)
	w.Fixed(stateMagic)
	w.U16(uint16(g.suite.ID()))
	g.st.encode(w)
	m := w.OpenVector()
	for _, sp := range g.proposals {
		w.Opaque(sp.ref)
		sp.sender.EncodeTo(w)
		sp.proposal.EncodeTo(w)
	}
	w.CloseVector(m)
	m = w.OpenVector()
	for _, ref := range slices.Sorted(maps.Keys(g.updateKeys)) {
		w.Opaque([]byte(ref))
		writeHPKEKey(w, g.updateKeys[ref])
	}
	w.CloseVector(m)
	w.Present(g.pending != nil)
	if p := g.pending; p != nil {
		p.next.encode(w)
		p.Committer.EncodeTo(w)
		w.U32(p.CommitterLeaf)
		m = w.OpenVector()
		for _, ap := range p.Proposals {
			ap.Sender.EncodeTo(w)
			w.Present(ap.Ref != nil)
			if ap.Ref != nil {
				w.Opaque(ap.Ref)
			}
			ap.Proposal.EncodeTo(w)
		}
		w.CloseVector(m)
		w.Present(p.ReInit != nil)
		if p.ReInit != nil {
			p.ReInit.EncodeTo(w)
		}
		w.Opaque(p.AuthenticatedData)
		w.U16(uint16(p.WireFormat))
		w.Opaque(p.Message)
	}
	m = w.OpenVector()
	for _, id := range slices.Sorted(maps.Keys(g.externalPSKs)) {
		w.Opaque([]byte(id))
		w.Opaque(g.externalPSKs[id])
	}
	w.CloseVector(m)
	m = w.OpenVector()
	for _, e := range slices.Sorted(maps.Keys(g.resumption)) {
		w.U64(e)
		w.Opaque(g.resumption[e])
	}
	w.CloseVector(m)
	m = w.OpenVector()
	for _, p := range g.past {
		p.ctx.EncodeTo(w)
		w.Opaque(p.senderData)
		sm := w.OpenVector()
		for _, k := range p.sigKeys {
			w.Present(k != nil)
			if k != nil {
				w.Opaque(k)
			}
		}
		w.CloseVector(sm)
		p.secrets.EncodeState(w)
		w.Present(p.ownCommit != nil)
		if p.ownCommit != nil {
			w.Opaque(p.ownCommit)
		}
	}
	w.CloseVector(m)
	if err := w.Err(); err != nil {
		return nil, fmt.Errorf("mls: serialize state: %w", err)
	}
	return w.Bytes(), nil
}

func writeHPKEKey(w *codec.Writer, k *cipher.HPKEPrivateKey) {
	b, err := k.Bytes()
	if err != nil {
		w.Fail(err)
		return
	}
	w.Opaque(b)
	b.Zero()
}

// encode writes an epoch's state.
func (st *epochState) encode(w *codec.Writer) {
	st.ctx.EncodeTo(w)
	st.tree.RatchetTree().EncodeTo(w)
	w.Opaque(st.interim)
	w.Opaque(st.confirmationTag)
	st.keys.EncodeState(w)
	st.secrets.EncodeState(w)
	w.U32(uint32(st.myLeaf))
	m := w.OpenVector()
	for _, x := range slices.Sorted(maps.Keys(st.nodeKeys)) {
		w.U32(uint32(x))
		writeHPKEKey(w, st.nodeKeys[x])
	}
	w.CloseVector(m)
}

// RestoreGroup rebuilds a group from MarshalState's bytes, with the
// member's signature key (which must be the one of its leaf) and local
// configuration. Nothing of the result aliases state, which the caller
// may zero afterwards. Malformed or inconsistent state is ErrState.
func RestoreGroup(state []byte, signer *cipher.SignatureKey, cfg GroupConfig) (*Group, error) {
	g, err := restoreGroup(state, signer, cfg)
	if err != nil {
		if errors.Is(err, ErrState) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	return g, nil
}

// stateReader reads serialized state; any problem is kept as its first
// error, as codec.Reader does for syntax.
type stateReader struct {
	*codec.Reader
	suite *cipher.Suite
	cfg   GroupConfig
	// drops collects the secrets restored so far, zeroed if restoring fails.
	drops []func()
}

func (r *stateReader) fail(format string, args ...any) {
	if r.Err() == nil {
		r.Fail(fmt.Errorf("%w: "+format, append([]any{ErrState}, args...)...))
	}
}

// secret reads an opaque secret of n bytes and copies it out.
func (r *stateReader) secret(n int) cipher.Secret {
	b := r.Opaque()
	if r.Err() == nil && len(b) != n {
		r.fail("secret of %d bytes, want %d", len(b), n)
		return nil
	}
	s := cipher.Secret(b).Clone()
	r.drops = append(r.drops, s.Zero)
	return s
}

func (r *stateReader) hpkeKey() *cipher.HPKEPrivateKey {
	b := r.Opaque()
	if r.Err() != nil {
		return nil
	}
	k, err := r.suite.ParseHPKEPrivateKey(b)
	if err != nil {
		r.fail("HPKE private key: %v", err)
		return nil
	}
	return k
}

// public decodes a public structure into v from a fresh copy of its
// encoding, so that it aliases neither the caller's state nor the secrets
// around it.
func public[T any, PT interface {
	*T
	Decoder
	Encoder
}](r *stateReader) *T {
	v := PT(new(T))
	v.DecodeFrom(r.Reader)
	if r.Err() != nil {
		return nil
	}
	c, err := copyOf[T, PT](v)
	if err != nil {
		r.fail("%v", err)
		return nil
	}
	return c
}

func (r *stateReader) epochState() *epochState {
	ctx := public[GroupContext](r)
	rt := public[RatchetTree](r)
	interim := bytes.Clone(r.Opaque())
	tag := bytes.Clone(r.Opaque())
	if r.Err() != nil {
		return nil
	}
	st := &epochState{ctx: *ctx, interim: interim, confirmationTag: tag}
	var err error
	if st.tree, err = NewTree(*rt); err != nil {
		r.fail("%v", err)
		return nil
	}
	st.tree.cacheHashes()
	if h, err := st.tree.TreeHash(r.suite); err != nil || !bytes.Equal(h, st.ctx.TreeHash) {
		r.fail("tree does not hash to the GroupContext's tree_hash (%v)", err)
		return nil
	}
	if ctx.CipherSuite != r.suite.ID() {
		r.fail("GroupContext of another suite")
		return nil
	}
	if want, err := keyschedule.InterimTranscriptHash(r.suite, ctx.ConfirmedTranscriptHash, tag); err != nil || !bytes.Equal(want, interim) {
		r.fail("interim transcript hash does not follow from the confirmation tag (%v)", err)
		return nil
	}
	if st.keys, err = keyschedule.RestoreState(r.suite, r.Reader); err != nil {
		r.fail("%v", err)
		return nil
	}
	r.drops = append(r.drops, st.keys.Drop)
	if st.secrets, err = secrettree.RestoreState(r.suite, r.Reader, st.tree.LeafCount(), r.cfg.SecretTree); err != nil {
		r.fail("%v", err)
		return nil
	}
	r.drops = append(r.drops, st.secrets.Drop)
	st.myLeaf = treemath.LeafIndex(r.U32())
	if r.Err() == nil && (uint32(st.myLeaf) >= st.tree.LeafCount() || st.tree.Leaf(st.myLeaf) == nil) {
		r.fail("own leaf %d is blank", st.myLeaf)
		return nil
	}
	st.nodeKeys = map[treemath.NodeIndex]*cipher.HPKEPrivateKey{}
	s := r.OpenVector()
	next := uint64(0)
	for r.More() {
		x := treemath.NodeIndex(r.U32())
		k := r.hpkeKey()
		if r.Err() != nil {
			break
		}
		if uint64(x) < next || !bytes.Equal(nodePublicKey(st.tree, x), k.PublicKey()) {
			r.fail("private key for node %d out of order or not the node's", x)
			break
		}
		next = uint64(x) + 1
		st.nodeKeys[x] = k
	}
	r.CloseVector(s)
	if r.Err() == nil && st.nodeKeys[st.myLeaf.NodeIndex()] == nil {
		r.fail("no private key for the own leaf")
	}
	return st
}

func restoreGroup(state []byte, signer *cipher.SignatureKey, cfg GroupConfig) (*Group, error) {
	if !bytes.HasPrefix(state, stateMagic) {
		return nil, fmt.Errorf("%w: not Burrow MLS group state (or another format version)", ErrState)
	}
	cr := codec.NewReader(state[len(stateMagic):])
	suite, err := newSuite(CipherSuite(cr.U16()))
	if err != nil {
		return nil, err
	}
	g, err := newGroup(cfg, suite, signer)
	if err != nil {
		return nil, err
	}
	r := &stateReader{Reader: cr, suite: suite, cfg: g.cfg}
	fail := func() (*Group, error) {
		for _, d := range r.drops {
			d()
		}
		return nil, r.Err()
	}
	g.st = r.epochState()
	if r.Err() != nil {
		return fail()
	}
	if !bytes.Equal(g.st.tree.Leaf(g.st.myLeaf).SignatureKey, signer.PublicKey()) {
		r.fail("the signature key is not the own leaf's")
		return fail()
	}
	s := r.OpenVector()
	for r.More() {
		ref := bytes.Clone(r.Opaque())
		sender := public[Sender](r)
		p := public[Proposal](r)
		if r.Err() == nil {
			g.proposals = append(g.proposals, storedProposal{ref: ref, sender: *sender, proposal: p})
		}
	}
	r.CloseVector(s)
	s = r.OpenVector()
	var prev []byte
	for r.More() {
		ref := r.Opaque()
		k := r.hpkeKey()
		if r.Err() == nil && prev != nil && bytes.Compare(ref, prev) <= 0 {
			r.fail("update keys out of order")
		}
		if r.Err() == nil {
			prev = ref
			g.updateKeys[string(ref)] = k
		}
	}
	r.CloseVector(s)
	if r.Present() {
		p := &StagedCommit{Own: true, group: g, base: g.st, Epoch: g.st.ctx.Epoch}
		p.next = r.epochState()
		if r.Err() == nil {
			p.NewEpoch = p.next.ctx.Epoch
			if p.NewEpoch != p.Epoch+1 || p.next.myLeaf != g.st.myLeaf {
				r.fail("pending commit does not follow the current epoch")
			}
		}
		p.Committer = *orEmpty(public[Sender](r))
		p.CommitterLeaf = r.U32()
		ps := r.OpenVector()
		for r.More() {
			ap := AppliedProposal{Sender: *orEmpty(public[Sender](r))}
			if r.Present() {
				ap.Ref = bytes.Clone(r.Opaque())
			}
			ap.Proposal = public[Proposal](r)
			p.Proposals = append(p.Proposals, ap)
		}
		r.CloseVector(ps)
		if r.Present() {
			p.ReInit = public[ReInit](r)
		}
		p.AuthenticatedData = bytes.Clone(r.Opaque())
		p.WireFormat = WireFormat(r.U16())
		p.Message = bytes.Clone(r.Opaque())
		if r.Err() == nil && checkWireFormat(p.WireFormat) != nil {
			r.fail("pending commit wire format %d", p.WireFormat)
		}
		g.pending = p
	}
	s = r.OpenVector()
	prev = nil
	for r.More() {
		id := r.Opaque()
		sec := r.Opaque()
		if r.Err() == nil && prev != nil && bytes.Compare(id, prev) <= 0 {
			r.fail("external PSKs out of order")
		}
		if r.Err() == nil {
			prev = id
			g.externalPSKs[string(id)] = cipher.Secret(sec).Clone()
		}
	}
	r.CloseVector(s)
	s = r.OpenVector()
	nextEpoch := uint64(0)
	for r.More() {
		e := r.U64()
		sec := r.secret(suite.Nh())
		if r.Err() == nil && e < nextEpoch {
			r.fail("resumption PSKs out of order")
		}
		if r.Err() == nil {
			nextEpoch = e + 1
			g.resumption[e] = sec
		}
	}
	r.CloseVector(s)
	s = r.OpenVector()
	for r.More() && r.Err() == nil {
		p := &pastEpoch{}
		p.ctx = *orEmpty(public[GroupContext](r))
		p.senderData = r.secret(suite.Nh())
		p.sigKeys = r.signatureKeys(g.st.tree)
		if r.Err() != nil {
			break
		}
		if len(p.sigKeys) == 0 {
			r.fail("past epoch without leaves")
			break
		}
		if p.secrets, err = secrettree.RestoreState(suite, r.Reader, uint32(len(p.sigKeys)), g.cfg.SecretTree); err != nil {
			r.fail("%v", err)
			break
		}
		r.drops = append(r.drops, p.secrets.Drop)
		if r.Present() {
			p.ownCommit = bytes.Clone(r.Opaque())
		}
		if n := len(g.past); n > 0 && p.ctx.Epoch <= g.past[n-1].ctx.Epoch || p.ctx.Epoch >= g.st.ctx.Epoch {
			r.fail("past epoch %d out of order", p.ctx.Epoch)
		}
		g.past = append(g.past, p)
	}
	r.CloseVector(s)
	if err := r.Finish(); err != nil {
		if r.Err() == nil {
			r.Fail(err)
		}
		return fail()
	}
	return g, nil
}

// signatureKeys reads a past epoch's signature keys. Most are still the
// current leaves' keys, which they then share; the others share one
// buffer, rather than one allocation each.
func (r *stateReader) signatureKeys(cur *Tree) [][]byte {
	var raw [][]byte
	s := r.OpenVector()
	for r.More() {
		var k []byte
		if r.Present() {
			if k = r.Opaque(); k == nil {
				k = []byte{}
			}
		}
		raw = append(raw, k)
	}
	r.CloseVector(s)
	if r.Err() != nil {
		return nil
	}
	out := make([][]byte, len(raw))
	var rest []byte
	for i, k := range raw {
		if ln := cur.Leaf(treemath.LeafIndex(i)); k != nil && ln != nil && bytes.Equal(ln.SignatureKey, k) {
			out[i] = ln.SignatureKey
		} else if k != nil {
			rest = append(rest, k...)
		}
	}
	rest = slices.Clip(rest)
	for i, k := range raw {
		switch {
		case out[i] != nil || k == nil:
		case len(k) == 0:
			out[i] = []byte{} // present, if empty
		default:
			out[i], rest = rest[:len(k):len(k)], rest[len(k):]
		}
	}
	return out
}

// orEmpty returns v, or a zero value when decoding failed (the reader then
// holds the error).
func orEmpty[T any](v *T) *T {
	if v == nil {
		return new(T)
	}
	return v
}
