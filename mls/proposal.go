package mls

import (
	"github.com/burrow-relay/burrow/mls/codec"
)

// PreSharedKeyID names a pre-shared key (RFC 9420 section 8.4).
type PreSharedKeyID struct {
	Type       PSKType
	PSKID      []byte             // PSKExternal
	Usage      ResumptionPSKUsage // PSKResumption
	PSKGroupID []byte             // PSKResumption
	PSKEpoch   uint64             // PSKResumption
	PSKNonce   []byte
}

// EncodeTo implements Encoder.
func (p *PreSharedKeyID) EncodeTo(w *codec.Writer) {
	w.U8(uint8(p.Type))
	switch p.Type {
	case PSKExternal:
		w.Opaque(p.PSKID)
	case PSKResumption:
		w.U8(uint8(p.Usage))
		w.Opaque(p.PSKGroupID)
		w.U64(p.PSKEpoch)
	default:
		w.Fail(ErrInvalidEnum)
	}
	w.Opaque(p.PSKNonce)
}

// DecodeFrom implements Decoder.
func (p *PreSharedKeyID) DecodeFrom(r *codec.Reader) {
	*p = PreSharedKeyID{}
	p.Type = PSKType(r.U8())
	switch p.Type {
	case PSKExternal:
		p.PSKID = r.Opaque()
	case PSKResumption:
		p.Usage = ResumptionPSKUsage(r.U8())
		p.PSKGroupID = r.Opaque()
		p.PSKEpoch = r.U64()
	default:
		badEnum(r, "psktype", uint64(p.Type))
	}
	p.PSKNonce = r.Opaque()
}

// Add proposes adding the KeyPackage's owner (RFC 9420 section 12.1.1).
type Add struct{ KeyPackage KeyPackage }

// EncodeTo implements Encoder.
func (a *Add) EncodeTo(w *codec.Writer) { a.KeyPackage.EncodeTo(w) }

// DecodeFrom implements Decoder.
func (a *Add) DecodeFrom(r *codec.Reader) { a.KeyPackage.DecodeFrom(r) }

// Update proposes replacing the sender's leaf (section 12.1.2).
type Update struct{ LeafNode LeafNode }

// EncodeTo implements Encoder.
func (u *Update) EncodeTo(w *codec.Writer) { u.LeafNode.EncodeTo(w) }

// DecodeFrom implements Decoder.
func (u *Update) DecodeFrom(r *codec.Reader) { u.LeafNode.DecodeFrom(r) }

// Remove proposes removing the member at leaf Removed (section 12.1.3).
type Remove struct{ Removed uint32 }

// EncodeTo implements Encoder.
func (p *Remove) EncodeTo(w *codec.Writer) { w.U32(p.Removed) }

// DecodeFrom implements Decoder.
func (p *Remove) DecodeFrom(r *codec.Reader) { p.Removed = r.U32() }

// PreSharedKey proposes injecting a PSK (section 12.1.4).
type PreSharedKey struct{ PSK PreSharedKeyID }

// EncodeTo implements Encoder.
func (p *PreSharedKey) EncodeTo(w *codec.Writer) { p.PSK.EncodeTo(w) }

// DecodeFrom implements Decoder.
func (p *PreSharedKey) DecodeFrom(r *codec.Reader) { p.PSK.DecodeFrom(r) }

// ReInit proposes re-initializing the group (section 12.1.5).
type ReInit struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  Extensions
}

// EncodeTo implements Encoder.
func (p *ReInit) EncodeTo(w *codec.Writer) {
	w.Opaque(p.GroupID)
	w.U16(uint16(p.Version))
	w.U16(uint16(p.CipherSuite))
	p.Extensions.EncodeTo(w)
}

// DecodeFrom implements Decoder.
func (p *ReInit) DecodeFrom(r *codec.Reader) {
	*p = ReInit{}
	p.GroupID = r.Opaque()
	p.Version = ProtocolVersion(r.U16())
	p.CipherSuite = CipherSuite(r.U16())
	p.Extensions.DecodeFrom(r)
}

// ExternalInit carries an external joiner's KEM output (section 12.1.6).
type ExternalInit struct{ KEMOutput []byte }

// EncodeTo implements Encoder.
func (p *ExternalInit) EncodeTo(w *codec.Writer) { w.Opaque(p.KEMOutput) }

// DecodeFrom implements Decoder.
func (p *ExternalInit) DecodeFrom(r *codec.Reader) { p.KEMOutput = r.Opaque() }

// GroupContextExtensions proposes new GroupContext extensions (section 12.1.7).
type GroupContextExtensions struct{ Extensions Extensions }

// EncodeTo implements Encoder.
func (p *GroupContextExtensions) EncodeTo(w *codec.Writer) { p.Extensions.EncodeTo(w) }

// DecodeFrom implements Decoder.
func (p *GroupContextExtensions) DecodeFrom(r *codec.Reader) { p.Extensions.DecodeFrom(r) }

// AppDataUpdateOp is the operation of an AppDataUpdate proposal.
type AppDataUpdateOp uint8

// AppDataUpdate operations (MLS extensions draft).
const (
	AppDataOpUpdate AppDataUpdateOp = 1
	AppDataOpRemove AppDataUpdateOp = 2
)

// AppDataUpdate changes one component of the GroupContext's
// app_data_dictionary (MLS extensions draft, proposal type 0x0008).
type AppDataUpdate struct {
	ComponentID ComponentID
	Op          AppDataUpdateOp
	Update      []byte // Op == AppDataOpUpdate
}

// EncodeTo implements Encoder.
func (p *AppDataUpdate) EncodeTo(w *codec.Writer) {
	w.U16(uint16(p.ComponentID))
	w.U8(uint8(p.Op))
	switch p.Op {
	case AppDataOpUpdate:
		w.Opaque(p.Update)
	case AppDataOpRemove:
	default:
		w.Fail(ErrInvalidEnum)
	}
}

// DecodeFrom implements Decoder.
func (p *AppDataUpdate) DecodeFrom(r *codec.Reader) {
	*p = AppDataUpdate{}
	p.ComponentID = ComponentID(r.U16())
	p.Op = AppDataUpdateOp(r.U8())
	switch p.Op {
	case AppDataOpUpdate:
		p.Update = r.Opaque()
	case AppDataOpRemove:
	default:
		badEnum(r, "app_data_update op", uint64(p.Op))
	}
}

// Proposal is a proposed change to the group (RFC 9420 section 12.1). The
// field matching Type holds the body; SelfRemove has an empty body. For
// proposal types this engine does not know, the body is carried as one
// opaque<V> value in Unknown (the convention MLS libraries use for custom
// proposals).
type Proposal struct {
	Type                   ProposalType
	Add                    *Add
	Update                 *Update
	Remove                 *Remove
	PreSharedKey           *PreSharedKey
	ReInit                 *ReInit
	ExternalInit           *ExternalInit
	GroupContextExtensions *GroupContextExtensions
	AppDataUpdate          *AppDataUpdate
	Unknown                []byte
}

// EncodeTo implements Encoder.
func (p *Proposal) EncodeTo(w *codec.Writer) {
	w.U16(uint16(p.Type))
	var body Encoder
	switch p.Type {
	case ProposalAdd:
		if p.Add != nil {
			body = p.Add
		}
	case ProposalUpdate:
		if p.Update != nil {
			body = p.Update
		}
	case ProposalRemove:
		if p.Remove != nil {
			body = p.Remove
		}
	case ProposalPSK:
		if p.PreSharedKey != nil {
			body = p.PreSharedKey
		}
	case ProposalReInit:
		if p.ReInit != nil {
			body = p.ReInit
		}
	case ProposalExternalInit:
		if p.ExternalInit != nil {
			body = p.ExternalInit
		}
	case ProposalGroupContextExtensions:
		if p.GroupContextExtensions != nil {
			body = p.GroupContextExtensions
		}
	case ProposalAppDataUpdate:
		if p.AppDataUpdate != nil {
			body = p.AppDataUpdate
		}
	case ProposalSelfRemove:
		return
	default:
		w.Opaque(p.Unknown)
		return
	}
	if body == nil {
		missing(w, "proposal body")
		return
	}
	body.EncodeTo(w)
}

// DecodeFrom implements Decoder.
func (p *Proposal) DecodeFrom(r *codec.Reader) {
	*p = Proposal{}
	p.Type = ProposalType(r.U16())
	switch p.Type {
	case ProposalAdd:
		p.Add = new(Add)
		p.Add.DecodeFrom(r)
	case ProposalUpdate:
		p.Update = new(Update)
		p.Update.DecodeFrom(r)
	case ProposalRemove:
		p.Remove = new(Remove)
		p.Remove.DecodeFrom(r)
	case ProposalPSK:
		p.PreSharedKey = new(PreSharedKey)
		p.PreSharedKey.DecodeFrom(r)
	case ProposalReInit:
		p.ReInit = new(ReInit)
		p.ReInit.DecodeFrom(r)
	case ProposalExternalInit:
		p.ExternalInit = new(ExternalInit)
		p.ExternalInit.DecodeFrom(r)
	case ProposalGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensions)
		p.GroupContextExtensions.DecodeFrom(r)
	case ProposalAppDataUpdate:
		p.AppDataUpdate = new(AppDataUpdate)
		p.AppDataUpdate.DecodeFrom(r)
	case ProposalSelfRemove:
	default:
		p.Unknown = r.Opaque()
	}
}

// ProposalOrRef is a Commit's proposal, given inline or by reference.
type ProposalOrRef struct {
	Type      ProposalOrRefType
	Proposal  *Proposal // ProposalOrRefProposal
	Reference []byte    // ProposalOrRefReference: a ProposalRef
}

// EncodeTo implements Encoder.
func (p *ProposalOrRef) EncodeTo(w *codec.Writer) {
	w.U8(uint8(p.Type))
	switch p.Type {
	case ProposalOrRefProposal:
		if p.Proposal == nil {
			missing(w, "inline proposal")
			return
		}
		p.Proposal.EncodeTo(w)
	case ProposalOrRefReference:
		w.Opaque(p.Reference)
	default:
		w.Fail(ErrInvalidEnum)
	}
}

// DecodeFrom implements Decoder.
func (p *ProposalOrRef) DecodeFrom(r *codec.Reader) {
	*p = ProposalOrRef{}
	p.Type = ProposalOrRefType(r.U8())
	switch p.Type {
	case ProposalOrRefProposal:
		p.Proposal = new(Proposal)
		p.Proposal.DecodeFrom(r)
	case ProposalOrRefReference:
		p.Reference = r.Opaque()
	default:
		badEnum(r, "proposal_or_ref type", uint64(p.Type))
	}
}

// Commit applies proposals and optionally updates the committer's path
// (RFC 9420 section 12.4).
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath // nil when absent
}

// EncodeTo implements Encoder.
func (c *Commit) EncodeTo(w *codec.Writer) {
	m := w.OpenVector()
	for i := range c.Proposals {
		c.Proposals[i].EncodeTo(w)
	}
	w.CloseVector(m)
	w.Present(c.Path != nil)
	if c.Path != nil {
		c.Path.EncodeTo(w)
	}
}

// DecodeFrom implements Decoder.
func (c *Commit) DecodeFrom(r *codec.Reader) {
	*c = Commit{}
	s := r.OpenVector()
	c.Proposals = nil
	for r.More() {
		var p ProposalOrRef
		p.DecodeFrom(r)
		c.Proposals = append(c.Proposals, p)
	}
	r.CloseVector(s)
	c.Path = nil
	if r.Present() {
		c.Path = new(UpdatePath)
		c.Path.DecodeFrom(r)
	}
}

// DecodeCommit decodes a bare Commit.
func DecodeCommit(b []byte) (*Commit, error) {
	c := new(Commit)
	if err := Unmarshal(b, c); err != nil {
		return nil, err
	}
	return c, nil
}
