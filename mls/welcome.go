package mls

import (
	"github.com/burrow-relay/burrow/mls/codec"
)

// GroupContext is the shared state every member agrees on in an epoch (RFC
// 9420 section 8.1).
type GroupContext struct {
	Version                 ProtocolVersion
	CipherSuite             CipherSuite
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              Extensions
}

// EncodeTo implements Encoder.
func (g *GroupContext) EncodeTo(w *codec.Writer) {
	w.U16(uint16(g.Version))
	w.U16(uint16(g.CipherSuite))
	w.Opaque(g.GroupID)
	w.U64(g.Epoch)
	w.Opaque(g.TreeHash)
	w.Opaque(g.ConfirmedTranscriptHash)
	g.Extensions.EncodeTo(w)
}

// DecodeFrom implements Decoder.
func (g *GroupContext) DecodeFrom(r *codec.Reader) {
	*g = GroupContext{}
	g.Version = ProtocolVersion(r.U16())
	g.CipherSuite = CipherSuite(r.U16())
	g.GroupID = r.Opaque()
	g.Epoch = r.U64()
	g.TreeHash = r.Opaque()
	g.ConfirmedTranscriptHash = r.Opaque()
	g.Extensions.DecodeFrom(r)
}

// GroupInfo describes a group to joiners (RFC 9420 section 12.4.3).
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      Extensions
	ConfirmationTag []byte // MAC
	Signer          uint32
	Signature       []byte
}

func (g *GroupInfo) encodeTBSFields(w *codec.Writer) {
	g.GroupContext.EncodeTo(w)
	g.Extensions.EncodeTo(w)
	w.Opaque(g.ConfirmationTag)
	w.U32(g.Signer)
}

// EncodeTo implements Encoder.
func (g *GroupInfo) EncodeTo(w *codec.Writer) {
	g.encodeTBSFields(w)
	w.Opaque(g.Signature)
}

// DecodeFrom implements Decoder.
func (g *GroupInfo) DecodeFrom(r *codec.Reader) {
	*g = GroupInfo{}
	g.GroupContext.DecodeFrom(r)
	g.Extensions.DecodeFrom(r)
	g.ConfirmationTag = r.Opaque()
	g.Signer = r.U32()
	g.Signature = r.Opaque()
}

// TBS returns the GroupInfoTBS bytes the signature covers (label
// "GroupInfoTBS"). Decoding is strict (one encoding per value), so for a
// received GroupInfo these are exactly the bytes that were signed.
func (g *GroupInfo) TBS() []byte {
	var w codec.Writer
	g.encodeTBSFields(&w)
	return w.Bytes()
}

// DecodeGroupInfo decodes a bare GroupInfo (as found, for example, inside
// a decrypted Welcome).
func DecodeGroupInfo(b []byte) (*GroupInfo, error) {
	g := new(GroupInfo)
	if err := Unmarshal(b, g); err != nil {
		return nil, err
	}
	return g, nil
}

// PathSecret carries the path secret a joiner needs (RFC 9420 section 12.4.3.1).
type PathSecret struct {
	PathSecret []byte
}

// EncodeTo implements Encoder.
func (p *PathSecret) EncodeTo(w *codec.Writer) { w.Opaque(p.PathSecret) }

// DecodeFrom implements Decoder.
func (p *PathSecret) DecodeFrom(r *codec.Reader) { p.PathSecret = r.Opaque() }

// GroupSecrets is what a Welcome encrypts to each new member.
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   *PathSecret // nil when absent
	PSKs         []PreSharedKeyID
}

// EncodeTo implements Encoder.
func (g *GroupSecrets) EncodeTo(w *codec.Writer) {
	w.Opaque(g.JoinerSecret)
	w.Present(g.PathSecret != nil)
	if g.PathSecret != nil {
		g.PathSecret.EncodeTo(w)
	}
	m := w.OpenVector()
	for i := range g.PSKs {
		g.PSKs[i].EncodeTo(w)
	}
	w.CloseVector(m)
}

// zero overwrites the secrets (joiner secret, path secret) once used.
func (g *GroupSecrets) zero() {
	clear(g.JoinerSecret)
	if g.PathSecret != nil {
		clear(g.PathSecret.PathSecret)
	}
}

// DecodeFrom implements Decoder.
func (g *GroupSecrets) DecodeFrom(r *codec.Reader) {
	*g = GroupSecrets{}
	g.JoinerSecret = r.Opaque()
	g.PathSecret = nil
	if r.Present() {
		g.PathSecret = new(PathSecret)
		g.PathSecret.DecodeFrom(r)
	}
	s := r.OpenVector()
	g.PSKs = nil
	for r.More() {
		var p PreSharedKeyID
		p.DecodeFrom(r)
		g.PSKs = append(g.PSKs, p)
	}
	r.CloseVector(s)
}

// EncryptedGroupSecrets is one new member's share of a Welcome.
type EncryptedGroupSecrets struct {
	NewMember             []byte // KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

// EncodeTo implements Encoder.
func (e *EncryptedGroupSecrets) EncodeTo(w *codec.Writer) {
	w.Opaque(e.NewMember)
	e.EncryptedGroupSecrets.EncodeTo(w)
}

// DecodeFrom implements Decoder.
func (e *EncryptedGroupSecrets) DecodeFrom(r *codec.Reader) {
	*e = EncryptedGroupSecrets{}
	e.NewMember = r.Opaque()
	e.EncryptedGroupSecrets.DecodeFrom(r)
}

// Welcome invites new members into a group (RFC 9420 section 12.4.3.1).
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

// EncodeTo implements Encoder.
func (wl *Welcome) EncodeTo(w *codec.Writer) {
	w.U16(uint16(wl.CipherSuite))
	m := w.OpenVector()
	for i := range wl.Secrets {
		wl.Secrets[i].EncodeTo(w)
	}
	w.CloseVector(m)
	w.Opaque(wl.EncryptedGroupInfo)
}

// DecodeFrom implements Decoder.
func (wl *Welcome) DecodeFrom(r *codec.Reader) {
	*wl = Welcome{}
	wl.CipherSuite = CipherSuite(r.U16())
	s := r.OpenVector()
	wl.Secrets = nil
	for r.More() {
		var e EncryptedGroupSecrets
		e.DecodeFrom(r)
		wl.Secrets = append(wl.Secrets, e)
	}
	r.CloseVector(s)
	wl.EncryptedGroupInfo = r.Opaque()
}

// DecodeWelcome decodes a bare Welcome.
func DecodeWelcome(b []byte) (*Welcome, error) {
	wl := new(Welcome)
	if err := Unmarshal(b, wl); err != nil {
		return nil, err
	}
	return wl, nil
}
