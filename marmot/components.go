package marmot

import (
	"bytes"
	"encoding/binary"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/codec"
)

// App component ids this package reads or writes. The first three are the
// MLS extensions draft's own (draft-ietf-mls-extensions-10, as the Marmot
// registry pins them); the others are Marmot's, from the registry in
// foundation/registries.md.
const (
	// ComponentAppComponents lists component ids: in a LeafNode's
	// dictionary the components the client supports, in the GroupContext's
	// the components every member must support.
	ComponentAppComponents mls.ComponentID = 0x0001
	// ComponentSafeAAD lists the components that frame authenticated data;
	// Marmot leaves write it empty.
	ComponentSafeAAD mls.ComponentID = 0x0002
	// ComponentLastResort marks a KeyPackage last resort (empty data, in
	// the KeyPackage's dictionary).
	ComponentLastResort mls.ComponentID = 0x0004
	// ComponentGroupProfile is marmot.group.profile.v1.
	ComponentGroupProfile mls.ComponentID = 0x8001
	// ComponentAdminPolicy is marmot.group.admin-policy.v1.
	ComponentAdminPolicy mls.ComponentID = 0x8003
	// ComponentNostrRouting is marmot.transport.nostr.routing.v1.
	ComponentNostrRouting mls.ComponentID = 0x8004
	// ComponentIdentityProof is marmot.member.account-identity-proof.v2,
	// a LeafNode component.
	ComponentIdentityProof mls.ComponentID = 0x8009
)

// ExtGroupData is the MIP-era marmot_group_data GroupContext extension
// (0xF2EE), which the current profile split into components. It is read,
// never written.
const ExtGroupData mls.ExtensionType = 0xF2EE

// Bounds of the component fields, from the component documents.
const (
	maxProfileName        = 256
	maxProfileDescription = 4096
	maxRelayURL           = 512
)

func componentError(id mls.ComponentID, cause error, format string, args ...any) *Error {
	e := fail(ErrComponent, cause, format, args...)
	e.Reason = "component " + componentName(id) + ": " + e.Reason
	return e
}

func componentName(id mls.ComponentID) string {
	switch id {
	case ComponentAppComponents:
		return "app_components (0x0001)"
	case ComponentGroupProfile:
		return "group profile (0x8001)"
	case ComponentAdminPolicy:
		return "admin policy (0x8003)"
	case ComponentNostrRouting:
		return "Nostr routing (0x8004)"
	case ComponentIdentityProof:
		return "account identity proof (0x8009)"
	}
	return "0x" + hex4(uint16(id))
}

func hex4(v uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf]})
}

// decodeExact runs read over b and requires it to consume every byte.
func decodeExact(id mls.ComponentID, b []byte, read func(r *codec.Reader)) error {
	r := codec.NewReader(b)
	read(r)
	if err := r.Finish(); err != nil {
		return componentError(id, err, "does not decode exactly: %v", err)
	}
	return nil
}

func encode(write func(w *codec.Writer)) []byte {
	w := codec.NewWriter(64)
	write(w)
	// Every field written here is bounded far below a varint's 2^30 limit.
	return w.Bytes()
}

// ComponentsList is the extensions draft's ComponentsList: component ids,
// each a uint16, in one vector. Marmot writes them sorted and unique and
// refuses anything else.
type ComponentsList []mls.ComponentID

// Marshal encodes the list sorted, without repeats.
func (l ComponentsList) Marshal() []byte {
	ids := slices.Clone(l)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return encode(func(w *codec.Writer) {
		m := w.OpenVector()
		for _, id := range ids {
			w.U16(uint16(id))
		}
		w.CloseVector(m)
	})
}

// ParseComponentsList decodes a ComponentsList, which must be sorted and
// free of repeats.
func ParseComponentsList(b []byte) (ComponentsList, error) {
	var raw []uint16
	if err := decodeExact(ComponentAppComponents, b, func(r *codec.Reader) { raw = r.U16Vector() }); err != nil {
		return nil, err
	}
	out := make(ComponentsList, len(raw))
	for i, v := range raw {
		if i > 0 && v <= raw[i-1] {
			return nil, componentError(ComponentAppComponents, nil, "ids not sorted or repeated at 0x%04x", v)
		}
		out[i] = mls.ComponentID(v)
	}
	return out, nil
}

// Has reports whether id is in the list.
func (l ComponentsList) Has(id mls.ComponentID) bool { return slices.Contains(l, id) }

// GroupProfile is marmot.group.profile.v1 (0x8001): the group's name and
// description, UTF-8, compared as bytes.
type GroupProfile struct {
	Name        string
	Description string
}

// Marshal encodes the profile; it fails when a field breaks the
// component's rules.
func (p GroupProfile) Marshal() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return encode(func(w *codec.Writer) {
		w.Opaque([]byte(p.Name))
		w.Opaque([]byte(p.Description))
	}), nil
}

func (p GroupProfile) validate() error {
	switch {
	case len(p.Name) > maxProfileName:
		return componentError(ComponentGroupProfile, nil, "name is %d bytes, at most %d", len(p.Name), maxProfileName)
	case len(p.Description) > maxProfileDescription:
		return componentError(ComponentGroupProfile, nil, "description is %d bytes, at most %d", len(p.Description), maxProfileDescription)
	case !utf8.ValidString(p.Name):
		return componentError(ComponentGroupProfile, nil, "name is not UTF-8")
	case !utf8.ValidString(p.Description):
		return componentError(ComponentGroupProfile, nil, "description is not UTF-8")
	}
	return nil
}

// ParseGroupProfile decodes and validates a group profile.
func ParseGroupProfile(b []byte) (GroupProfile, error) {
	var name, desc []byte
	if err := decodeExact(ComponentGroupProfile, b, func(r *codec.Reader) {
		name, desc = r.Opaque(), r.Opaque()
	}); err != nil {
		return GroupProfile{}, err
	}
	p := GroupProfile{Name: string(name), Description: string(desc)}
	if err := p.validate(); err != nil {
		return GroupProfile{}, err
	}
	return p, nil
}

// Pubkey is a raw 32-byte x-only secp256k1 public key: a Marmot account
// identity.
type Pubkey [32]byte

// AdminPolicy is marmot.group.admin-policy.v1 (0x8003): the accounts that
// may commit admin-gated changes.
type AdminPolicy struct {
	Admins []Pubkey
}

// Marshal encodes the policy with its admins sorted; it fails on an empty
// or repeated admin list.
func (p AdminPolicy) Marshal() ([]byte, error) {
	admins := slices.Clone(p.Admins)
	slices.SortFunc(admins, func(a, b Pubkey) int { return bytes.Compare(a[:], b[:]) })
	if err := validateAdmins(admins); err != nil {
		return nil, err
	}
	return encode(func(w *codec.Writer) {
		m := w.OpenVector()
		for _, a := range admins {
			w.Fixed(a[:])
		}
		w.CloseVector(m)
	}), nil
}

func validateAdmins(sorted []Pubkey) error {
	if len(sorted) == 0 {
		return componentError(ComponentAdminPolicy, nil, "admin list is empty")
	}
	for i := 1; i < len(sorted); i++ {
		if c := bytes.Compare(sorted[i-1][:], sorted[i][:]); c >= 0 {
			if c == 0 {
				return componentError(ComponentAdminPolicy, nil, "admin %x listed twice", sorted[i][:])
			}
			return componentError(ComponentAdminPolicy, nil, "admins not sorted")
		}
	}
	return nil
}

// ParseAdminPolicy decodes and validates an admin policy: a non-empty,
// sorted list of unique 32-byte keys.
func ParseAdminPolicy(b []byte) (AdminPolicy, error) {
	var raw []byte
	if err := decodeExact(ComponentAdminPolicy, b, func(r *codec.Reader) { raw = r.Opaque() }); err != nil {
		return AdminPolicy{}, err
	}
	if len(raw)%32 != 0 {
		return AdminPolicy{}, componentError(ComponentAdminPolicy, nil, "admin list is %d bytes, not a multiple of 32", len(raw))
	}
	p := AdminPolicy{Admins: make([]Pubkey, len(raw)/32)}
	for i := range p.Admins {
		copy(p.Admins[i][:], raw[32*i:])
	}
	if err := validateAdmins(p.Admins); err != nil {
		return AdminPolicy{}, err
	}
	return p, nil
}

// IsAdmin reports whether account is one of the admins.
func (p AdminPolicy) IsAdmin(account Pubkey) bool { return slices.Contains(p.Admins, account) }

// NostrRouting is marmot.transport.nostr.routing.v1 (0x8004): the random
// 32-byte id a group's kind 445 events carry in their h tag, and the
// group's relays.
type NostrRouting struct {
	GroupID [32]byte
	Relays  []string
}

// Marshal encodes the routing state with its relays sorted; it fails on an
// empty, repeated or invalid relay list.
func (n NostrRouting) Marshal() ([]byte, error) {
	relays := slices.Clone(n.Relays)
	slices.Sort(relays)
	if err := validateRelays(relays); err != nil {
		return nil, err
	}
	return encode(func(w *codec.Writer) {
		w.Fixed(n.GroupID[:])
		m := w.OpenVector()
		for _, r := range relays {
			w.Opaque([]byte(r))
		}
		w.CloseVector(m)
	}), nil
}

func validateRelays(sorted []string) error {
	if len(sorted) == 0 {
		return componentError(ComponentNostrRouting, nil, "relay list is empty")
	}
	for i, r := range sorted {
		if err := CheckRelayURL(r); err != nil {
			return componentError(ComponentNostrRouting, err, "relay %d: %v", i, err)
		}
		if i > 0 {
			switch c := strings.Compare(sorted[i-1], r); {
			case c == 0:
				return componentError(ComponentNostrRouting, nil, "relay %s listed twice", quote(r))
			case c > 0:
				return componentError(ComponentNostrRouting, nil, "relays not sorted by their bytes")
			}
		}
	}
	return nil
}

// ParseNostrRouting decodes and validates a routing state (or a routing
// update, which is a full replacement state).
func ParseNostrRouting(b []byte) (NostrRouting, error) {
	var n NostrRouting
	if err := decodeExact(ComponentNostrRouting, b, func(r *codec.Reader) {
		copy(n.GroupID[:], r.Fixed(32))
		m := r.OpenVector()
		for r.More() {
			n.Relays = append(n.Relays, string(r.Opaque()))
		}
		r.CloseVector(m)
	}); err != nil {
		return NostrRouting{}, err
	}
	if err := validateRelays(n.Relays); err != nil {
		return NostrRouting{}, err
	}
	return n, nil
}

// CheckRelayURL applies the Nostr relay URL profile of the Marmot Nostr
// transport: UTF-8, at most 512 bytes, absolute, scheme ws or wss, a host,
// no user information and no fragment. It never rewrites the URL: signed
// group state is compared as bytes.
func CheckRelayURL(s string) error {
	switch {
	case len(s) == 0 || len(s) > maxRelayURL:
		return fail(ErrRelayURL, nil, "relay URL is %d bytes, want 1 to %d", len(s), maxRelayURL)
	case !utf8.ValidString(s):
		return fail(ErrRelayURL, nil, "relay URL is not UTF-8")
	case !strings.HasPrefix(s, "wss://") && !strings.HasPrefix(s, "ws://"):
		return fail(ErrRelayURL, nil, "relay URL %s: scheme must be ws or wss", quote(s))
	case strings.Contains(s, "#"):
		return fail(ErrRelayURL, nil, "relay URL %s has a fragment", quote(s))
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fail(ErrRelayURL, err, "relay URL %s does not parse", quote(s))
	case u.User != nil:
		return fail(ErrRelayURL, nil, "relay URL %s carries user information", quote(s))
	case u.Host == "" || u.Hostname() == "":
		return fail(ErrRelayURL, nil, "relay URL %s has no host", quote(s))
	}
	return nil
}

// IdentityProof is marmot.member.account-identity-proof.v2 (0x8009): the
// 104-byte MarmotAuthorizationProof by which an account authorizes one MLS
// leaf signature key.
type IdentityProof struct {
	Signer    Pubkey
	CreatedAt uint64
	Signature [64]byte
}

// identityProofSize is the fixed size of a MarmotAuthorizationProof.
const identityProofSize = 32 + 8 + 64

// maxProofTime bounds created_at (2^53 - 1, exact in JSON numbers).
const maxProofTime = 1<<53 - 1

// Marshal encodes the proof (104 bytes).
func (p IdentityProof) Marshal() []byte {
	b := make([]byte, 0, identityProofSize)
	b = append(b, p.Signer[:]...)
	b = binary.BigEndian.AppendUint64(b, p.CreatedAt)
	return append(b, p.Signature[:]...)
}

// ParseIdentityProof decodes exactly one 104-byte proof and checks its
// created_at range; the signature is checked by VerifyLeafIdentity.
func ParseIdentityProof(b []byte) (IdentityProof, error) {
	if len(b) != identityProofSize {
		return IdentityProof{}, componentError(ComponentIdentityProof, nil, "proof is %d bytes, want %d", len(b), identityProofSize)
	}
	var p IdentityProof
	copy(p.Signer[:], b)
	p.CreatedAt = binary.BigEndian.Uint64(b[32:])
	copy(p.Signature[:], b[40:])
	if p.CreatedAt == 0 || p.CreatedAt > maxProofTime {
		return IdentityProof{}, componentError(ComponentIdentityProof, nil, "created_at %d outside 1..2^53-1", p.CreatedAt)
	}
	return p, nil
}

// LegacyGroupData is the MIP-era marmot_group_data extension (0xF2EE) as
// MDK up to 0.8 writes it: every variable-length field with an MLS varint
// prefix, admins as concatenated raw keys. Versions 1 and 2 end with
// ImageUploadKey; version 3 adds DisappearingSecs.
type LegacyGroupData struct {
	Version        uint16
	NostrGroupID   [32]byte
	Name           string
	Description    string
	Admins         []Pubkey
	Relays         []string
	ImageHash      []byte // empty or 32 bytes
	ImageKey       []byte // empty or 32 bytes
	ImageNonce     []byte // empty or 12 bytes
	ImageUploadKey []byte // empty or 32 bytes
	// DisappearingSecs is the version 3 message lifetime; 0 when absent.
	DisappearingSecs uint64
}

// ParseLegacyGroupData decodes a 0xF2EE extension's data. Versions above
// 3 may append fields, which are skipped; known versions must decode
// exactly.
func ParseLegacyGroupData(b []byte) (LegacyGroupData, error) {
	var g LegacyGroupData
	var admins, image, key, nonce, upload, disappearing []byte
	r := codec.NewReader(b)
	g.Version = r.U16()
	copy(g.NostrGroupID[:], r.Fixed(32))
	g.Name, g.Description = string(r.Opaque()), string(r.Opaque())
	admins = r.Opaque()
	m := r.OpenVector()
	for r.More() {
		g.Relays = append(g.Relays, string(r.Opaque()))
	}
	r.CloseVector(m)
	image, key, nonce, upload = r.Opaque(), r.Opaque(), r.Opaque(), r.Opaque()
	if g.Version >= 3 {
		disappearing = r.Opaque()
	}
	var err error
	if g.Version > 3 {
		err = r.Err() // later versions append fields
	} else {
		err = r.Finish()
	}
	if err != nil {
		return LegacyGroupData{}, fail(ErrComponent, err, "0xF2EE group data does not decode: %v", err)
	}
	if g.Version == 0 {
		return LegacyGroupData{}, fail(ErrComponent, nil, "0xF2EE group data version 0")
	}
	if len(admins)%32 != 0 {
		return LegacyGroupData{}, fail(ErrComponent, nil, "0xF2EE admins are %d bytes, not a multiple of 32", len(admins))
	}
	for i := 0; i < len(admins); i += 32 {
		g.Admins = append(g.Admins, Pubkey(admins[i:i+32]))
	}
	for _, f := range []struct {
		name string
		b    []byte
		n    int
		dst  *[]byte
	}{{"image_hash", image, 32, &g.ImageHash}, {"image_key", key, 32, &g.ImageKey}, {"image_nonce", nonce, 12, &g.ImageNonce}, {"image_upload_key", upload, 32, &g.ImageUploadKey}} {
		if len(f.b) != 0 && len(f.b) != f.n {
			return LegacyGroupData{}, fail(ErrComponent, nil, "0xF2EE %s is %d bytes, want 0 or %d", f.name, len(f.b), f.n)
		}
		*f.dst = bytes.Clone(f.b)
	}
	switch len(disappearing) {
	case 0:
	case 8:
		if g.DisappearingSecs = binary.BigEndian.Uint64(disappearing); g.DisappearingSecs == 0 {
			return LegacyGroupData{}, fail(ErrComponent, nil, "0xF2EE disappearing_message_secs is zero")
		}
	default:
		return LegacyGroupData{}, fail(ErrComponent, nil, "0xF2EE disappearing_message_secs is %d bytes, want 0 or 8", len(disappearing))
	}
	for _, rl := range g.Relays {
		if !utf8.ValidString(rl) {
			return LegacyGroupData{}, fail(ErrComponent, nil, "0xF2EE relay URL is not UTF-8")
		}
	}
	return g, nil
}
