package mls

import (
	"errors"
	"fmt"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
)

// Errors reported by decoding and encoding. Decoding errors also wrap a
// *codec.Error carrying the input offset; match with errors.Is.
var (
	// ErrInvalidEnum means a selector (sender type, content type, leaf node
	// source, wire format, …) has a value for which the body's syntax is
	// unknown, so the rest of the structure cannot be parsed.
	ErrInvalidEnum = errors.New("mls: invalid or unsupported enum value")
	// ErrMissingBody means a value's selector names a variant whose field is
	// nil, so it cannot be encoded.
	ErrMissingBody = errors.New("mls: selected variant has no value")
	// ErrInvalidPadding means a PrivateMessageContent's padding has a
	// non-zero byte.
	ErrInvalidPadding = errors.New("mls: non-zero padding")
)

// ProtocolVersion is an MLS protocol version (RFC 9420 section 6).
type ProtocolVersion uint16

// MLS10 is the only protocol version RFC 9420 defines.
const MLS10 ProtocolVersion = 1

// CipherSuite identifies an MLS cipher suite (RFC 9420 section 17.1). It is
// mls/cipher's type, so a suite read off the wire goes to cipher.New as is.
type CipherSuite = cipher.CipherSuite

// Cipher suites this engine implements.
const (
	X25519AES128GCMSHA256Ed25519        = cipher.MLS128DHKEMX25519AES128GCMSHA256Ed25519
	P256AES128GCMSHA256P256             = cipher.MLS128DHKEMP256AES128GCMSHA256P256
	X25519ChaCha20Poly1305SHA256Ed25519 = cipher.MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519
)

// ExtensionType identifies an extension (RFC 9420 section 17.3).
type ExtensionType uint16

// Extension types known to this engine.
const (
	ExtApplicationID        ExtensionType = 0x0001
	ExtRatchetTree          ExtensionType = 0x0002
	ExtRequiredCapabilities ExtensionType = 0x0003
	ExtExternalPub          ExtensionType = 0x0004
	ExtExternalSenders      ExtensionType = 0x0005
	// ExtAppDataDictionary is app_data_dictionary from the MLS extensions draft.
	ExtAppDataDictionary ExtensionType = 0x0006
	// ExtLastResort marks a KeyPackage as last-resort (MLS extensions draft,
	// as Marmot uses it): its extension_data is empty.
	ExtLastResort ExtensionType = 0x000a
)

// ProposalType identifies a proposal (RFC 9420 section 17.4).
type ProposalType uint16

// Proposal types known to this engine.
const (
	ProposalAdd                    ProposalType = 0x0001
	ProposalUpdate                 ProposalType = 0x0002
	ProposalRemove                 ProposalType = 0x0003
	ProposalPSK                    ProposalType = 0x0004
	ProposalReInit                 ProposalType = 0x0005
	ProposalExternalInit           ProposalType = 0x0006
	ProposalGroupContextExtensions ProposalType = 0x0007
	// ProposalAppDataUpdate is app_data_update from the MLS extensions draft.
	ProposalAppDataUpdate ProposalType = 0x0008
	// ProposalSelfRemove is self_remove from the MLS extensions draft.
	ProposalSelfRemove ProposalType = 0x000a
)

// CredentialType identifies a credential (RFC 9420 section 17.5).
type CredentialType uint16

// Credential types defined by RFC 9420.
const (
	CredentialBasic CredentialType = 0x0001
	CredentialX509  CredentialType = 0x0002
)

// WireFormat identifies how an MLSMessage is framed (RFC 9420 section 17.2).
type WireFormat uint16

// Wire formats defined by RFC 9420.
const (
	WireFormatPublicMessage  WireFormat = 0x0001
	WireFormatPrivateMessage WireFormat = 0x0002
	WireFormatWelcome        WireFormat = 0x0003
	WireFormatGroupInfo      WireFormat = 0x0004
	WireFormatKeyPackage     WireFormat = 0x0005
)

func (w WireFormat) String() string {
	switch w {
	case WireFormatPublicMessage:
		return "PublicMessage"
	case WireFormatPrivateMessage:
		return "PrivateMessage"
	case WireFormatWelcome:
		return "Welcome"
	case WireFormatGroupInfo:
		return "GroupInfo"
	case WireFormatKeyPackage:
		return "KeyPackage"
	}
	return fmt.Sprintf("WireFormat(0x%04x)", uint16(w))
}

// ContentType is the kind of content a FramedContent carries.
type ContentType uint8

// Content types (RFC 9420 section 6).
const (
	ContentApplication ContentType = 1
	ContentProposal    ContentType = 2
	ContentCommit      ContentType = 3
)

func (c ContentType) valid() bool { return c >= ContentApplication && c <= ContentCommit }

// SenderType is the kind of sender of a FramedContent.
type SenderType uint8

// Sender types (RFC 9420 section 6).
const (
	SenderMember            SenderType = 1
	SenderExternal          SenderType = 2
	SenderNewMemberProposal SenderType = 3
	SenderNewMemberCommit   SenderType = 4
)

// LeafNodeSource says how a LeafNode was created (RFC 9420 section 7.2).
type LeafNodeSource uint8

// Leaf node sources.
const (
	LeafNodeSourceKeyPackage LeafNodeSource = 1
	LeafNodeSourceUpdate     LeafNodeSource = 2
	LeafNodeSourceCommit     LeafNodeSource = 3
)

// NodeType distinguishes leaf and parent nodes in a ratchet tree.
type NodeType uint8

// Node types (RFC 9420 section 7.8).
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

// PSKType distinguishes external and resumption pre-shared keys.
type PSKType uint8

// PSK types (RFC 9420 section 8.4).
const (
	PSKExternal   PSKType = 1
	PSKResumption PSKType = 2
)

// ResumptionPSKUsage says what a resumption PSK is used for.
type ResumptionPSKUsage uint8

// Resumption PSK usages (RFC 9420 section 8.4).
const (
	ResumptionApplication ResumptionPSKUsage = 1
	ResumptionReInit      ResumptionPSKUsage = 2
	ResumptionBranch      ResumptionPSKUsage = 3
)

// ProposalOrRefType says whether a Commit carries a proposal or its reference.
type ProposalOrRefType uint8

// ProposalOrRef types (RFC 9420 section 12.4).
const (
	ProposalOrRefProposal  ProposalOrRefType = 1
	ProposalOrRefReference ProposalOrRefType = 2
)

// Encoder is a wire structure that can be TLS-encoded.
type Encoder interface {
	EncodeTo(w *codec.Writer)
}

// Decoder is a wire structure that can be TLS-decoded.
type Decoder interface {
	DecodeFrom(r *codec.Reader)
}

// Marshal encodes v.
func Marshal(v Encoder) ([]byte, error) {
	var w codec.Writer
	v.EncodeTo(&w)
	if err := w.Err(); err != nil {
		return nil, fmt.Errorf("mls: encode %T: %w", v, err)
	}
	return w.Bytes(), nil
}

// Unmarshal decodes b into v, requiring that b holds exactly one value. The
// decoded value aliases b.
func Unmarshal(b []byte, v Decoder) error {
	r := codec.NewReader(b)
	v.DecodeFrom(r)
	if err := r.Finish(); err != nil {
		return fmt.Errorf("mls: decode %T: %w", v, err)
	}
	return nil
}

// badEnum records that field has a value whose syntax is unknown.
func badEnum(r *codec.Reader, field string, v uint64) {
	if r.Err() == nil {
		r.Fail(fmt.Errorf("%w: %s %d", ErrInvalidEnum, field, v))
	}
}

// missing records that an encoder met a nil variant.
func missing(w *codec.Writer, what string) {
	w.Fail(fmt.Errorf("%w: %s", ErrMissingBody, what))
}
