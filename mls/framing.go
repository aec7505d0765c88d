package mls

import (
	"github.com/burrow-relay/burrow/mls/codec"
)

// Sender identifies who sent a FramedContent (RFC 9420 section 6).
type Sender struct {
	Type SenderType
	// Index is the leaf_index for SenderMember and the sender_index into the
	// external_senders extension for SenderExternal; unused otherwise.
	Index uint32
}

// EncodeTo implements Encoder.
func (s *Sender) EncodeTo(w *codec.Writer) {
	w.U8(uint8(s.Type))
	switch s.Type {
	case SenderMember, SenderExternal:
		w.U32(s.Index)
	case SenderNewMemberProposal, SenderNewMemberCommit:
	default:
		w.Fail(ErrInvalidEnum)
	}
}

// DecodeFrom implements Decoder.
func (s *Sender) DecodeFrom(r *codec.Reader) {
	*s = Sender{}
	s.Type = SenderType(r.U8())
	switch s.Type {
	case SenderMember, SenderExternal:
		s.Index = r.U32()
	case SenderNewMemberProposal, SenderNewMemberCommit:
	default:
		badEnum(r, "sender_type", uint64(s.Type))
	}
}

// FramedContent is the authenticated body of a handshake or application
// message (RFC 9420 section 6).
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	ApplicationData   []byte    // ContentApplication
	Proposal          *Proposal // ContentProposal
	Commit            *Commit   // ContentCommit
}

// EncodeTo implements Encoder.
func (c *FramedContent) EncodeTo(w *codec.Writer) {
	w.Opaque(c.GroupID)
	w.U64(c.Epoch)
	c.Sender.EncodeTo(w)
	w.Opaque(c.AuthenticatedData)
	w.U8(uint8(c.ContentType))
	encodeContentBody(w, c.ContentType, c.ApplicationData, c.Proposal, c.Commit)
}

func encodeContentBody(w *codec.Writer, ct ContentType, app []byte, p *Proposal, cm *Commit) {
	switch ct {
	case ContentApplication:
		w.Opaque(app)
	case ContentProposal:
		if p == nil {
			missing(w, "proposal content")
			return
		}
		p.EncodeTo(w)
	case ContentCommit:
		if cm == nil {
			missing(w, "commit content")
			return
		}
		cm.EncodeTo(w)
	default:
		w.Fail(ErrInvalidEnum)
	}
}

func decodeContentBody(r *codec.Reader, ct ContentType) (app []byte, p *Proposal, cm *Commit) {
	switch ct {
	case ContentApplication:
		app = r.Opaque()
	case ContentProposal:
		p = new(Proposal)
		p.DecodeFrom(r)
	case ContentCommit:
		cm = new(Commit)
		cm.DecodeFrom(r)
	default:
		badEnum(r, "content_type", uint64(ct))
	}
	return app, p, cm
}

// DecodeFrom implements Decoder.
func (c *FramedContent) DecodeFrom(r *codec.Reader) {
	*c = FramedContent{}
	c.GroupID = r.Opaque()
	c.Epoch = r.U64()
	c.Sender.DecodeFrom(r)
	c.AuthenticatedData = r.Opaque()
	c.ContentType = ContentType(r.U8())
	c.ApplicationData, c.Proposal, c.Commit = decodeContentBody(r, c.ContentType)
}

// FramedContentAuthData is the signature, plus the confirmation tag for a
// commit, of a FramedContent.
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte // ContentCommit only (a MAC)
}

// EncodeTo writes the auth data of content of type ct.
func (a *FramedContentAuthData) EncodeTo(w *codec.Writer, ct ContentType) {
	w.Opaque(a.Signature)
	if ct == ContentCommit {
		w.Opaque(a.ConfirmationTag)
	}
}

// DecodeFrom reads the auth data of content of type ct.
func (a *FramedContentAuthData) DecodeFrom(r *codec.Reader, ct ContentType) {
	*a = FramedContentAuthData{}
	a.Signature = r.Opaque()
	a.ConfirmationTag = nil
	if ct == ContentCommit {
		a.ConfirmationTag = r.Opaque()
	}
}

// AuthenticatedContent is FramedContent with its wire format and auth data
// (RFC 9420 section 6.1); its encoding is what a ProposalRef hashes.
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

// EncodeTo implements Encoder.
func (a *AuthenticatedContent) EncodeTo(w *codec.Writer) {
	w.U16(uint16(a.WireFormat))
	a.Content.EncodeTo(w)
	a.Auth.EncodeTo(w, a.Content.ContentType)
}

// DecodeFrom implements Decoder.
func (a *AuthenticatedContent) DecodeFrom(r *codec.Reader) {
	*a = AuthenticatedContent{}
	a.WireFormat = WireFormat(r.U16())
	a.Content.DecodeFrom(r)
	a.Auth.DecodeFrom(r, a.Content.ContentType)
}

// FramedContentTBS returns the bytes a FramedContent's signature covers
// (label "FramedContentTBS"): version, wire format, the content, and the
// GroupContext when the sender is a member or a new member committing.
// ctx may be nil for the other sender types.
func FramedContentTBS(wf WireFormat, c *FramedContent, ctx *GroupContext) ([]byte, error) {
	var w codec.Writer
	w.U16(uint16(MLS10))
	w.U16(uint16(wf))
	c.EncodeTo(&w)
	switch c.Sender.Type {
	case SenderMember, SenderNewMemberCommit:
		if ctx == nil {
			missing(&w, "group context for FramedContentTBS")
		} else {
			ctx.EncodeTo(&w)
		}
	}
	if err := w.Err(); err != nil {
		return nil, err
	}
	return w.Bytes(), nil
}

// ConfirmedTranscriptHashInput returns the bytes hashed into the confirmed
// transcript hash for a commit (RFC 9420 section 8.2): wire format, the
// content, and the signature.
func ConfirmedTranscriptHashInput(wf WireFormat, c *FramedContent, signature []byte) ([]byte, error) {
	var w codec.Writer
	w.U16(uint16(wf))
	c.EncodeTo(&w)
	w.Opaque(signature)
	if err := w.Err(); err != nil {
		return nil, err
	}
	return w.Bytes(), nil
}

// PublicMessage is a signed, unencrypted handshake or application message
// (RFC 9420 section 6.2).
type PublicMessage struct {
	Content       FramedContent
	Auth          FramedContentAuthData
	MembershipTag []byte // SenderMember only (a MAC)
}

// EncodeTo implements Encoder.
func (m *PublicMessage) EncodeTo(w *codec.Writer) {
	m.Content.EncodeTo(w)
	m.Auth.EncodeTo(w, m.Content.ContentType)
	if m.Content.Sender.Type == SenderMember {
		w.Opaque(m.MembershipTag)
	}
}

// DecodeFrom implements Decoder.
func (m *PublicMessage) DecodeFrom(r *codec.Reader) {
	*m = PublicMessage{}
	m.Content.DecodeFrom(r)
	m.Auth.DecodeFrom(r, m.Content.ContentType)
	m.MembershipTag = nil
	if m.Content.Sender.Type == SenderMember {
		m.MembershipTag = r.Opaque()
	}
}

// AuthenticatedContent returns the message's content and auth data with the
// public-message wire format.
func (m *PublicMessage) AuthenticatedContent() *AuthenticatedContent {
	return &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: m.Content, Auth: m.Auth}
}

// PrivateMessage is an encrypted handshake or application message (RFC 9420
// section 6.3).
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

// EncodeTo implements Encoder.
func (m *PrivateMessage) EncodeTo(w *codec.Writer) {
	w.Opaque(m.GroupID)
	w.U64(m.Epoch)
	w.U8(uint8(m.ContentType))
	w.Opaque(m.AuthenticatedData)
	w.Opaque(m.EncryptedSenderData)
	w.Opaque(m.Ciphertext)
}

// DecodeFrom implements Decoder. The content type is checked here because
// it selects the plaintext's syntax.
func (m *PrivateMessage) DecodeFrom(r *codec.Reader) {
	*m = PrivateMessage{}
	m.GroupID = r.Opaque()
	m.Epoch = r.U64()
	m.ContentType = ContentType(r.U8())
	if !m.ContentType.valid() {
		badEnum(r, "content_type", uint64(m.ContentType))
	}
	m.AuthenticatedData = r.Opaque()
	m.EncryptedSenderData = r.Opaque()
	m.Ciphertext = r.Opaque()
}

// PrivateMessageContent is the plaintext inside a PrivateMessage (RFC 9420
// section 6.3.1). Its content type comes from the enclosing message.
type PrivateMessageContent struct {
	ApplicationData []byte    // ContentApplication
	Proposal        *Proposal // ContentProposal
	Commit          *Commit   // ContentCommit
	Auth            FramedContentAuthData
	Padding         int // number of zero bytes after the auth data
}

// EncodeTo writes the plaintext of a message of content type ct.
func (c *PrivateMessageContent) EncodeTo(w *codec.Writer, ct ContentType) {
	encodeContentBody(w, ct, c.ApplicationData, c.Proposal, c.Commit)
	c.Auth.EncodeTo(w, ct)
	for range c.Padding {
		w.U8(0)
	}
}

// DecodeFrom reads the plaintext of a message of content type ct, which
// must fill the reader; every padding byte must be zero.
func (c *PrivateMessageContent) DecodeFrom(r *codec.Reader, ct ContentType) {
	*c = PrivateMessageContent{}
	c.ApplicationData, c.Proposal, c.Commit = decodeContentBody(r, ct)
	c.Auth.DecodeFrom(r, ct)
	if r.Err() != nil {
		return
	}
	pad := r.Fixed(r.Remaining())
	for _, b := range pad {
		if b != 0 {
			r.Fail(ErrInvalidPadding)
			return
		}
	}
	c.Padding = len(pad)
}

// SenderData is the encrypted sender information of a PrivateMessage (RFC
// 9420 section 6.3.2).
type SenderData struct {
	LeafIndex  uint32
	Generation uint32
	ReuseGuard [4]byte
}

// EncodeTo implements Encoder.
func (s *SenderData) EncodeTo(w *codec.Writer) {
	w.U32(s.LeafIndex)
	w.U32(s.Generation)
	w.Fixed(s.ReuseGuard[:])
}

// DecodeFrom implements Decoder.
func (s *SenderData) DecodeFrom(r *codec.Reader) {
	*s = SenderData{}
	s.LeafIndex = r.U32()
	s.Generation = r.U32()
	copy(s.ReuseGuard[:], r.Fixed(4))
}

// MLSMessage is the top-level framing of everything MLS sends (RFC 9420
// section 6). The field matching WireFormat holds the body.
type MLSMessage struct {
	Version        ProtocolVersion
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

// EncodeTo implements Encoder.
func (m *MLSMessage) EncodeTo(w *codec.Writer) {
	w.U16(uint16(m.Version))
	w.U16(uint16(m.WireFormat))
	var body Encoder
	switch m.WireFormat {
	case WireFormatPublicMessage:
		if m.PublicMessage != nil {
			body = m.PublicMessage
		}
	case WireFormatPrivateMessage:
		if m.PrivateMessage != nil {
			body = m.PrivateMessage
		}
	case WireFormatWelcome:
		if m.Welcome != nil {
			body = m.Welcome
		}
	case WireFormatGroupInfo:
		if m.GroupInfo != nil {
			body = m.GroupInfo
		}
	case WireFormatKeyPackage:
		if m.KeyPackage != nil {
			body = m.KeyPackage
		}
	default:
		w.Fail(ErrInvalidEnum)
		return
	}
	if body == nil {
		missing(w, "message body")
		return
	}
	body.EncodeTo(w)
}

// DecodeFrom implements Decoder. Only the wire formats of RFC 9420 can be
// decoded; any other is ErrInvalidEnum.
func (m *MLSMessage) DecodeFrom(r *codec.Reader) {
	*m = MLSMessage{}
	m.Version = ProtocolVersion(r.U16())
	m.WireFormat = WireFormat(r.U16())
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		m.PublicMessage.DecodeFrom(r)
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		m.PrivateMessage.DecodeFrom(r)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		m.Welcome.DecodeFrom(r)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		m.GroupInfo.DecodeFrom(r)
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		m.KeyPackage.DecodeFrom(r)
	default:
		badEnum(r, "wire_format", uint64(m.WireFormat))
	}
}

// DecodeMLSMessage decodes an MLSMessage.
func DecodeMLSMessage(b []byte) (*MLSMessage, error) {
	m := new(MLSMessage)
	if err := Unmarshal(b, m); err != nil {
		return nil, err
	}
	return m, nil
}
