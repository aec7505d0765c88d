package mls

import (
	"errors"
	"fmt"

	"github.com/burrow-relay/burrow/mls/codec"
)

// Credential binds an identity to a signature key (RFC 9420 section 5.3).
// For types other than basic and x509 the body is carried as one opaque<V>
// value in Data, the convention MLS libraries use for custom credentials.
type Credential struct {
	Type         CredentialType
	Identity     []byte   // basic
	Certificates [][]byte // x509: each cert_data
	Data         []byte   // any other type
}

// EncodeTo implements Encoder.
func (c *Credential) EncodeTo(w *codec.Writer) {
	w.U16(uint16(c.Type))
	switch c.Type {
	case CredentialBasic:
		w.Opaque(c.Identity)
	case CredentialX509:
		m := w.OpenVector()
		for _, cert := range c.Certificates {
			w.Opaque(cert)
		}
		w.CloseVector(m)
	default:
		w.Opaque(c.Data)
	}
}

// DecodeFrom implements Decoder.
func (c *Credential) DecodeFrom(r *codec.Reader) {
	*c = Credential{}
	c.Type = CredentialType(r.U16())
	switch c.Type {
	case CredentialBasic:
		c.Identity = r.Opaque()
	case CredentialX509:
		s := r.OpenVector()
		for r.More() {
			c.Certificates = append(c.Certificates, r.Opaque())
		}
		r.CloseVector(s)
	default:
		c.Data = r.Opaque()
	}
}

// ErrAppDataOrder means an app_data_dictionary's entries are not in
// strictly increasing component order.
var ErrAppDataOrder = errors.New("mls: app_data_dictionary entries out of order or repeated")

// Capabilities lists what a client supports (RFC 9420 section 7.2).
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

// EncodeTo implements Encoder.
func (c *Capabilities) EncodeTo(w *codec.Writer) {
	writeU16s(w, c.Versions)
	writeU16s(w, c.CipherSuites)
	writeU16s(w, c.Extensions)
	writeU16s(w, c.Proposals)
	writeU16s(w, c.Credentials)
}

// DecodeFrom implements Decoder.
func (c *Capabilities) DecodeFrom(r *codec.Reader) {
	*c = Capabilities{}
	c.Versions = readU16s[ProtocolVersion](r)
	c.CipherSuites = readU16s[CipherSuite](r)
	c.Extensions = readU16s[ExtensionType](r)
	c.Proposals = readU16s[ProposalType](r)
	c.Credentials = readU16s[CredentialType](r)
}

type u16Enum interface {
	~uint16
}

func writeU16s[T u16Enum](w *codec.Writer, v []T) {
	w.Varint(uint64(len(v)) * 2)
	for _, x := range v {
		w.U16(uint16(x))
	}
}

func readU16s[T u16Enum](r *codec.Reader) []T {
	s := r.OpenVector()
	var out []T
	if n := r.Remaining(); r.Err() == nil && n > 0 {
		if n%2 != 0 {
			r.Fail(codec.ErrVectorLength)
		} else {
			out = make([]T, 0, n/2)
		}
	}
	for r.More() {
		out = append(out, T(r.U16()))
	}
	r.CloseVector(s)
	return out
}

// Lifetime bounds a KeyPackage's validity in seconds since the Unix epoch.
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// EncodeTo implements Encoder.
func (l *Lifetime) EncodeTo(w *codec.Writer) {
	w.U64(l.NotBefore)
	w.U64(l.NotAfter)
}

// DecodeFrom implements Decoder.
func (l *Lifetime) DecodeFrom(r *codec.Reader) {
	*l = Lifetime{}
	l.NotBefore = r.U64()
	l.NotAfter = r.U64()
}

// Extension is one generic extension: any type, its data kept as bytes.
type Extension struct {
	Type ExtensionType
	Data []byte
}

// Extensions is an Extension extensions<V> list.
type Extensions []Extension

// EncodeTo implements Encoder.
func (e Extensions) EncodeTo(w *codec.Writer) {
	m := w.OpenVector()
	for i := range e {
		w.U16(uint16(e[i].Type))
		w.Opaque(e[i].Data)
	}
	w.CloseVector(m)
}

// DecodeFrom implements Decoder.
func (e *Extensions) DecodeFrom(r *codec.Reader) {
	s := r.OpenVector()
	var out Extensions
	for r.More() {
		t := ExtensionType(r.U16())
		out = append(out, Extension{Type: t, Data: r.Opaque()})
	}
	r.CloseVector(s)
	*e = out
}

// Find returns the first extension of type t.
func (e Extensions) Find(t ExtensionType) (Extension, bool) {
	for _, x := range e {
		if x.Type == t {
			return x, true
		}
	}
	return Extension{}, false
}

// Has reports whether an extension of type t is present.
func (e Extensions) Has(t ExtensionType) bool {
	_, ok := e.Find(t)
	return ok
}

// Duplicate returns a type that occurs more than once (RFC 9420 section 13.4
// forbids that in any extension list), and ok false if there is none.
func (e Extensions) Duplicate() (dup ExtensionType, ok bool) {
	for i := range e {
		for j := i + 1; j < len(e); j++ {
			if e[i].Type == e[j].Type {
				return e[i].Type, true
			}
		}
	}
	return 0, false
}

// decodeExt decodes the extension of type t into v. It returns found false
// when the extension is absent.
func (e Extensions) decodeExt(t ExtensionType, v Decoder) (found bool, err error) {
	x, ok := e.Find(t)
	if !ok {
		return false, nil
	}
	if err := Unmarshal(x.Data, v); err != nil {
		return true, fmt.Errorf("extension 0x%04x: %w", uint16(t), err)
	}
	return true, nil
}

// RatchetTree decodes the ratchet_tree extension.
func (e Extensions) RatchetTree() (tree RatchetTree, found bool, err error) {
	found, err = e.decodeExt(ExtRatchetTree, &tree)
	return tree, found, err
}

// RequiredCapabilities decodes the required_capabilities extension.
func (e Extensions) RequiredCapabilities() (rc RequiredCapabilities, found bool, err error) {
	found, err = e.decodeExt(ExtRequiredCapabilities, &rc)
	return rc, found, err
}

// ExternalPub decodes the external_pub extension.
func (e Extensions) ExternalPub() (ep ExternalPub, found bool, err error) {
	found, err = e.decodeExt(ExtExternalPub, &ep)
	return ep, found, err
}

// ExternalSenders decodes the external_senders extension.
func (e Extensions) ExternalSenders() (es ExternalSenders, found bool, err error) {
	found, err = e.decodeExt(ExtExternalSenders, &es)
	return es, found, err
}

// ApplicationID decodes the application_id extension.
func (e Extensions) ApplicationID() (id ApplicationID, found bool, err error) {
	found, err = e.decodeExt(ExtApplicationID, &id)
	return id, found, err
}

// AppDataDictionary decodes the app_data_dictionary extension and checks
// that its entries are in strictly increasing component order, as the
// extensions draft requires (ErrAppDataOrder otherwise).
func (e Extensions) AppDataDictionary() (d AppDataDictionary, found bool, err error) {
	found, err = e.decodeExt(ExtAppDataDictionary, &d)
	if err == nil && !d.Sorted() {
		err = fmt.Errorf("extension 0x%04x: %w", uint16(ExtAppDataDictionary), ErrAppDataOrder)
	}
	return d, found, err
}

// LastResort reports whether the last_resort extension is present. Its data
// must be empty; anything else is an error.
func (e Extensions) LastResort() (found bool, err error) {
	x, ok := e.Find(ExtLastResort)
	if !ok {
		return false, nil
	}
	if len(x.Data) != 0 {
		return true, fmt.Errorf("extension last_resort: %w: %d bytes of data", codec.ErrTrailingBytes, len(x.Data))
	}
	return true, nil
}

// NewExtension encodes v as the data of an extension of type t.
func NewExtension(t ExtensionType, v Encoder) (Extension, error) {
	b, err := Marshal(v)
	if err != nil {
		return Extension{}, err
	}
	return Extension{Type: t, Data: b}, nil
}

// RequiredCapabilities is the required_capabilities extension's content.
type RequiredCapabilities struct {
	ExtensionTypes  []ExtensionType
	ProposalTypes   []ProposalType
	CredentialTypes []CredentialType
}

// EncodeTo implements Encoder.
func (c *RequiredCapabilities) EncodeTo(w *codec.Writer) {
	writeU16s(w, c.ExtensionTypes)
	writeU16s(w, c.ProposalTypes)
	writeU16s(w, c.CredentialTypes)
}

// DecodeFrom implements Decoder.
func (c *RequiredCapabilities) DecodeFrom(r *codec.Reader) {
	*c = RequiredCapabilities{}
	c.ExtensionTypes = readU16s[ExtensionType](r)
	c.ProposalTypes = readU16s[ProposalType](r)
	c.CredentialTypes = readU16s[CredentialType](r)
}

// ExternalPub is the external_pub extension's content.
type ExternalPub struct {
	PublicKey []byte // HPKEPublicKey
}

// EncodeTo implements Encoder.
func (p *ExternalPub) EncodeTo(w *codec.Writer) { w.Opaque(p.PublicKey) }

// DecodeFrom implements Decoder.
func (p *ExternalPub) DecodeFrom(r *codec.Reader) { p.PublicKey = r.Opaque() }

// ExternalSender is one entry of the external_senders extension.
type ExternalSender struct {
	SignatureKey []byte
	Credential   Credential
}

// ExternalSenders is the external_senders extension's content.
type ExternalSenders []ExternalSender

// EncodeTo implements Encoder.
func (s ExternalSenders) EncodeTo(w *codec.Writer) {
	m := w.OpenVector()
	for i := range s {
		w.Opaque(s[i].SignatureKey)
		s[i].Credential.EncodeTo(w)
	}
	w.CloseVector(m)
}

// DecodeFrom implements Decoder.
func (s *ExternalSenders) DecodeFrom(r *codec.Reader) {
	st := r.OpenVector()
	var out ExternalSenders
	for r.More() {
		var x ExternalSender
		x.SignatureKey = r.Opaque()
		x.Credential.DecodeFrom(r)
		out = append(out, x)
	}
	r.CloseVector(st)
	*s = out
}

// ApplicationID is the application_id extension's content.
type ApplicationID []byte

// EncodeTo implements Encoder.
func (a ApplicationID) EncodeTo(w *codec.Writer) { w.Opaque(a) }

// DecodeFrom implements Decoder.
func (a *ApplicationID) DecodeFrom(r *codec.Reader) { *a = r.Opaque() }

// ComponentID identifies an application component (MLS extensions draft).
type ComponentID uint16

// ComponentData is one entry of an AppDataDictionary.
type ComponentData struct {
	ComponentID ComponentID
	Data        []byte
}

// AppDataDictionary is the app_data_dictionary extension's content. The
// draft requires entries sorted by ComponentID with no repeats; decoding
// keeps them as sent, Sorted checks the rule, and Extensions.AppDataDictionary
// applies it, so every dictionary the engine reads on receipt is checked.
type AppDataDictionary struct {
	Components []ComponentData
}

// EncodeTo implements Encoder.
func (d *AppDataDictionary) EncodeTo(w *codec.Writer) {
	m := w.OpenVector()
	for i := range d.Components {
		w.U16(uint16(d.Components[i].ComponentID))
		w.Opaque(d.Components[i].Data)
	}
	w.CloseVector(m)
}

// DecodeFrom implements Decoder.
func (d *AppDataDictionary) DecodeFrom(r *codec.Reader) {
	*d = AppDataDictionary{}
	s := r.OpenVector()
	d.Components = nil
	for r.More() {
		id := ComponentID(r.U16())
		d.Components = append(d.Components, ComponentData{ComponentID: id, Data: r.Opaque()})
	}
	r.CloseVector(s)
}

// Sorted reports whether the entries are in strictly increasing
// ComponentID order, as the extensions draft requires.
func (d *AppDataDictionary) Sorted() bool {
	for i := 1; i < len(d.Components); i++ {
		if d.Components[i].ComponentID <= d.Components[i-1].ComponentID {
			return false
		}
	}
	return true
}

// Find returns the data of component id.
func (d *AppDataDictionary) Find(id ComponentID) ([]byte, bool) {
	for _, c := range d.Components {
		if c.ComponentID == id {
			return c.Data, true
		}
	}
	return nil, false
}
