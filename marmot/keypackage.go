package marmot

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/mls"
	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
)

// KeyPackage event kinds.
const (
	// KindKeyPackage is the current, addressable KeyPackage kind (one d slot
	// per installation).
	KindKeyPackage = 30443
	// KindLegacyKeyPackage is the MIP-era KeyPackage kind, read only.
	KindLegacyKeyPackage = 443
)

// IsKeyPackageKind reports whether kind is 443 or 30443.
func IsKeyPackageKind(kind int) bool {
	return kind == KindKeyPackage || kind == KindLegacyKeyPackage
}

// MaxKeyPackageLifetime is the current profile's bound on not_after -
// not_before: 84 days plus one hour of clock-skew margin (7,261,200 s).
const MaxKeyPackageLifetime = 84*24*time.Hour + time.Hour

// maxSlotLength bounds a kind 30443's d value when reading any era: the
// current profile writes 64 lowercase hex characters, marmot-ts 0.5
// writes the application's client id.
const maxSlotLength = 256

// The capabilities a current-profile leaf advertises, and a group
// requires: app_data_dictionary, AppDataUpdate and SelfRemove (default
// RFC 9420 types are never listed, section 7.2).
var (
	profileExtensions = []mls.ExtensionType{mls.ExtAppDataDictionary}
	profileProposals  = []mls.ProposalType{mls.ProposalAppDataUpdate, mls.ProposalSelfRemove}
)

// DefaultComponents are the app components this package supports and
// advertises in its KeyPackages.
var DefaultComponents = ComponentsList{ComponentGroupProfile, ComponentAdminPolicy, ComponentNostrRouting, ComponentIdentityProof}

// KeyPackageEvent is what reading a KeyPackage event learned.
type KeyPackageEvent struct {
	Kind int
	// Author is the event's pubkey, which is the credential identity.
	Author Pubkey
	// Slot is the d tag of a kind 30443, empty for kind 443.
	Slot string
	// Ref is the KeyPackageRef of the inner KeyPackage, lowercase hex: the
	// value of a correct i tag, and what matches a 443 and a 30443 twin.
	Ref         string
	CipherSuite mls.CipherSuite
	// NotBefore and NotAfter are the leaf's lifetime in Unix seconds.
	NotBefore, NotAfter uint64
	// LastResort is set when the KeyPackage is marked last resort: the
	// last_resort extension (0x000a, MIP era) or component 0x0004.
	LastResort bool
	// CurrentProfile is set when the event carries an app_components tag.
	CurrentProfile bool
	// Framed is set when the content is an MLSMessage framing the
	// KeyPackage rather than a bare KeyPackage.
	Framed bool
	// KeyPackage is the decoded inner KeyPackage.
	KeyPackage *mls.KeyPackage
}

// ParseKeyPackageEvent reads a KeyPackage event of any published era and
// checks its shape: kind 443 or 30443; on 30443 exactly one non-empty d of
// at most 256 bytes; content standard padded base64 (on 443, hex when the
// encoding tag is absent or "hex"); exactly one KeyPackage, bare or framed
// in an MLSMessage of wire format mls_key_package, of protocol mls10; a
// ciphersuite equal to the mls_ciphersuite tag (on 443 also the NIP-EE
// ciphersuite tag) and implemented here; the KeyPackage's RFC 9420 section
// 10.1 checks and signatures; a BasicCredential naming the author (32 raw
// bytes, or on 443 also its hex text); a lifetime not inverted; and an i
// tag (required on 30443) equal to the KeyPackageRef. It does not check the
// lifetime against a clock, nor the current profile's tags, components and
// identity proof (ValidateKeyPackageEvent does), nor the event's id and
// signature (the caller's, before trusting any field). Every failure is an
// *Error whose Check is one ErrKeyPackage* sentinel.
func ParseKeyPackageEvent(ev *nostr.Event) (*KeyPackageEvent, error) {
	if !IsKeyPackageKind(ev.Kind) {
		return nil, fail(ErrKeyPackageKind, nil, "kind %d is not a KeyPackage kind (443 or 30443)", ev.Kind)
	}
	out := &KeyPackageEvent{Kind: ev.Kind}
	if ev.Kind == KindKeyPackage {
		slot, err := slotTag(ev.Tags)
		if err != nil {
			return nil, err
		}
		out.Slot = slot
	}
	tagSuite, tagName, err := suiteTag(ev.Kind, ev.Tags)
	if err != nil {
		return nil, err
	}
	refTag, err := iTag(ev.Kind, ev.Tags)
	if err != nil {
		return nil, err
	}
	out.CurrentProfile = hasTag(ev.Tags, "app_components")

	raw, err := decodeKeyPackageContent(ev.Kind, ev.Content, ev.Tags)
	if err != nil {
		return nil, err
	}
	kp, framed, err := parseKeyPackage(raw)
	if err != nil {
		return nil, err
	}
	out.Framed = framed
	if kp.Version != mls.MLS10 {
		return nil, fail(ErrKeyPackageVersion, nil, "KeyPackage protocol version is %d, want mls10 (1)", kp.Version)
	}
	if uint16(kp.CipherSuite) != tagSuite {
		return nil, fail(ErrKeyPackageCipherSuiteMismatch, nil,
			"KeyPackage ciphersuite is 0x%04x but the %s tag says 0x%04x", uint16(kp.CipherSuite), tagName, tagSuite)
	}
	suite, err := cipher.New(kp.CipherSuite)
	if err != nil {
		return nil, fail(ErrKeyPackageCipherSuite, err, "ciphersuite 0x%04x is not supported", uint16(kp.CipherSuite))
	}
	out.CipherSuite = suite.ID()
	author, err := checkIdentity(ev, &kp.LeafNode.Credential)
	if err != nil {
		return nil, err
	}
	out.Author = author
	// No clock here: when a lifetime is current, and how long it may be,
	// are the caller's rules (the relay's grace and cap; the current
	// profile's, in ValidateKeyPackageEvent).
	if err := mls.VerifyKeyPackage(suite, kp, mls.LeafNodeRules{}); err != nil {
		return nil, classifyVerify(err, kp.LeafNode.Lifetime)
	}
	lt := kp.LeafNode.Lifetime
	out.NotBefore, out.NotAfter = lt.NotBefore, lt.NotAfter
	if lt.NotBefore > lt.NotAfter {
		return nil, fail(ErrKeyPackageLifetime, nil, "lifetime not_before %s is after not_after %s", unixText(lt.NotBefore), unixText(lt.NotAfter))
	}
	kpBytes, err := kp.Bytes()
	if err != nil {
		return nil, fail(ErrKeyPackageRef, err, "cannot encode the KeyPackage")
	}
	ref, err := suite.KeyPackageRef(kpBytes)
	if err != nil {
		return nil, fail(ErrKeyPackageRef, err, "cannot compute the KeyPackageRef")
	}
	out.Ref = hex.EncodeToString(ref)
	switch {
	case refTag == nil && ev.Kind == KindKeyPackage:
		return nil, fail(ErrKeyPackageRef, nil, "missing i tag: kind 30443 must carry the KeyPackageRef %s", out.Ref)
	case refTag != nil && *refTag != out.Ref:
		return nil, fail(ErrKeyPackageRef, nil, "i tag %s is not the KeyPackageRef %s of the KeyPackage (lowercase hex)", quote(*refTag), out.Ref)
	}
	out.LastResort = isLastResort(kp)
	out.KeyPackage = kp
	return out, nil
}

// ReadKeyPackageRef reads the KeyPackage of an event that was already
// checked by ParseKeyPackageEvent (for example one a relay stored after
// validating it): content decoding and framing only, no signature, tag or
// credential checks. It returns the KeyPackageRef in lowercase hex and
// whether the KeyPackage is last resort.
func ReadKeyPackageRef(ev *nostr.Event) (ref string, lastResort bool, err error) {
	raw, err := decodeKeyPackageContent(ev.Kind, ev.Content, ev.Tags)
	if err != nil {
		return "", false, err
	}
	kp, _, err := parseKeyPackage(raw)
	if err != nil {
		return "", false, err
	}
	suite, err := cipher.New(kp.CipherSuite)
	if err != nil {
		return "", false, fail(ErrKeyPackageCipherSuite, err, "ciphersuite 0x%04x is not supported", uint16(kp.CipherSuite))
	}
	kpBytes, err := kp.Bytes()
	if err != nil {
		return "", false, fail(ErrKeyPackageRef, err, "cannot encode the KeyPackage")
	}
	r, err := suite.KeyPackageRef(kpBytes)
	if err != nil {
		return "", false, fail(ErrKeyPackageRef, err, "cannot compute the KeyPackageRef")
	}
	return hex.EncodeToString(r), isLastResort(kp), nil
}

// tagValues returns the first value of every tag named name; a tag with no
// value contributes "".
func tagValues(tags nostr.Tags, name string) []string {
	var out []string
	for _, t := range tags {
		if len(t) == 0 || t[0] != name {
			continue
		}
		if len(t) < 2 {
			out = append(out, "")
		} else {
			out = append(out, t[1])
		}
	}
	return out
}

func hasTag(tags nostr.Tags, name string) bool {
	for _, t := range tags {
		if len(t) > 0 && t[0] == name {
			return true
		}
	}
	return false
}

func slotTag(tags nostr.Tags) (string, error) {
	ds := tagValues(tags, "d")
	switch len(ds) {
	case 0:
		return "", fail(ErrKeyPackageSlot, nil, "missing d tag: kind 30443 needs exactly one non-empty d")
	case 1:
	default:
		return "", fail(ErrKeyPackageSlot, nil, "%d d tags: kind 30443 needs exactly one", len(ds))
	}
	d := ds[0]
	switch {
	case d == "":
		return "", fail(ErrKeyPackageSlot, nil, "empty d tag: kind 30443 needs a non-empty d")
	case len(d) > maxSlotLength:
		return "", fail(ErrKeyPackageSlot, nil, "d tag is %d bytes, at most %d allowed", len(d), maxSlotLength)
	}
	return d, nil
}

// suiteTag reads the mls_ciphersuite tag. On kind 443 it falls back to the
// NIP-EE era's name, ciphersuite, so that era's tag set passes.
func suiteTag(kind int, tags nostr.Tags) (suite uint16, name string, err error) {
	name = "mls_ciphersuite"
	vals := tagValues(tags, name)
	if len(vals) == 0 && kind == KindLegacyKeyPackage {
		name = "ciphersuite"
		vals = tagValues(tags, name)
	}
	switch len(vals) {
	case 0:
		return 0, "", fail(ErrKeyPackageCipherSuite, nil, "missing mls_ciphersuite tag")
	case 1:
	default:
		return 0, "", fail(ErrKeyPackageCipherSuite, nil, "%d %s tags, want one", len(vals), name)
	}
	s := vals[0]
	var n uint64
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		n, err = strconv.ParseUint(h, 16, 16)
	} else {
		n, err = strconv.ParseUint(s, 10, 16)
	}
	if err != nil || s == "" {
		return 0, "", fail(ErrKeyPackageCipherSuite, nil, "%s tag %s is not a ciphersuite number such as 0x0001", name, quote(s))
	}
	return uint16(n), name, nil
}

// iTag returns the i tag's value, or nil if there is none.
func iTag(kind int, tags nostr.Tags) (*string, error) {
	vals := tagValues(tags, "i")
	switch len(vals) {
	case 0:
		return nil, nil
	case 1:
		return &vals[0], nil
	}
	return nil, fail(ErrKeyPackageRef, nil, "%d i tags on kind %d, want one", len(vals), kind)
}

// decodeKeyPackageContent turns the content into bytes: base64 on 30443;
// on 443, hex when the encoding tag is absent or "hex", base64 when it is
// "base64".
func decodeKeyPackageContent(kind int, content string, tags nostr.Tags) ([]byte, error) {
	encs := tagValues(tags, "encoding")
	if len(encs) > 1 {
		return nil, fail(ErrKeyPackageEncoding, nil, "%d encoding tags, want at most one", len(encs))
	}
	enc := ""
	if len(encs) == 1 {
		enc = encs[0]
	}
	useHex := false
	switch {
	case enc == "base64":
	case kind == KindKeyPackage && enc == "":
	case kind == KindKeyPackage:
		return nil, fail(ErrKeyPackageEncoding, nil, "kind 30443 content must be base64, but the encoding tag says %s", quote(enc))
	case enc == "" || enc == "hex":
		useHex = true
	default:
		return nil, fail(ErrKeyPackageEncoding, nil, "unknown encoding %s, want base64 or hex", quote(enc))
	}
	if content == "" {
		return nil, fail(ErrKeyPackageEncoding, nil, "empty content")
	}
	if useHex {
		b, err := hex.DecodeString(content)
		if err != nil {
			return nil, fail(ErrKeyPackageEncoding, err, "content is not hex (kind 443 without an encoding tag means hex): %v", err)
		}
		return b, nil
	}
	b, err := decodeBase64(content)
	if err != nil {
		return nil, fail(ErrKeyPackageEncoding, err, "content %v", err)
	}
	return b, nil
}

// errBase64 is the cause of every base64 refusal.
var errBase64 = errors.New("is not standard padded base64")

// decodeBase64 decodes standard padded base64 (RFC 4648 section 4) and
// nothing else: the decoder skips line breaks even in strict mode, and the
// canonical form has none.
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("has line breaks; standard padded base64 has none: %w", errBase64)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBase64, err)
	}
	return b, nil
}

// parseKeyPackage decodes b as exactly one KeyPackage, bare or framed.
// Bytes 2-3 tell them apart: the ciphersuite in a bare KeyPackage, the
// wire format (5, mls_key_package) in an MLSMessage.
func parseKeyPackage(b []byte) (kp *mls.KeyPackage, framed bool, err error) {
	if len(b) < 4 {
		return nil, false, fail(ErrKeyPackageFraming, nil, "content is %d bytes, too short for a KeyPackage", len(b))
	}
	if mls.WireFormat(binary.BigEndian.Uint16(b[2:4])) == mls.WireFormatKeyPackage {
		m := new(mls.MLSMessage)
		trailing, merr := decodeLeading(b, m)
		switch {
		case merr == nil && trailing > 0:
			return nil, false, trailingBytes(trailing)
		case merr == nil && m.Version != mls.MLS10:
			return nil, false, fail(ErrKeyPackageVersion, nil, "MLSMessage protocol version is %d, want mls10 (1)", m.Version)
		case merr == nil:
			return m.KeyPackage, true, nil
		}
		// A bare KeyPackage of ciphersuite 5 also has 00 05 there; the
		// ciphersuite checks refuse it with a clearer reason.
		kp := new(mls.KeyPackage)
		if trailing, err := decodeLeading(b, kp); err == nil && trailing == 0 {
			return kp, false, nil
		}
		return nil, false, fail(ErrKeyPackageFraming, merr, "content is an MLSMessage of wire format mls_key_package that does not decode: %v", merr)
	}
	kp = new(mls.KeyPackage)
	trailing, err := decodeLeading(b, kp)
	switch {
	case err == nil && trailing > 0:
		return nil, false, trailingBytes(trailing)
	case err == nil:
		return kp, false, nil
	}
	if m, merr := mls.DecodeMLSMessage(b); merr == nil {
		return nil, false, fail(ErrKeyPackageFraming, nil, "content is an MLSMessage of wire format %d, want mls_key_package (5)", m.WireFormat)
	}
	return nil, false, fail(ErrKeyPackageFraming, err, "content is not a KeyPackage: %v", err)
}

// decodeLeading reads one v from the start of b and says how many bytes
// are left after it; mls.Unmarshal would refuse them without saying how
// many.
func decodeLeading(b []byte, v mls.Decoder) (trailing int, err error) {
	r := codec.NewReader(b)
	v.DecodeFrom(r)
	if err := r.Err(); err != nil {
		return 0, err
	}
	return len(b) - r.Offset(), nil
}

func trailingBytes(n int) error {
	return fail(ErrKeyPackageFraming, codec.ErrTrailingBytes, "trailing bytes after the KeyPackage (%d)", n)
}

func checkIdentity(ev *nostr.Event, cred *mls.Credential) (Pubkey, error) {
	if cred.Type != mls.CredentialBasic {
		return Pubkey{}, fail(ErrKeyPackageIdentity, nil, "credential type is 0x%04x, want basic (0x0001)", uint16(cred.Type))
	}
	author, err := hex.DecodeString(ev.PubKey)
	if err != nil || len(author) != 32 {
		return Pubkey{}, fail(ErrKeyPackageIdentity, err, "event pubkey is not 64 hex characters")
	}
	if bytes.Equal(cred.Identity, author) {
		return Pubkey(author), nil
	}
	// Legacy 443s may carry the identity as the pubkey's hex text.
	hexText := len(cred.Identity) == 64 && strings.EqualFold(string(cred.Identity), ev.PubKey)
	if ev.Kind == KindLegacyKeyPackage && hexText {
		return Pubkey(author), nil
	}
	if ev.Kind == KindKeyPackage && hexText {
		return Pubkey{}, fail(ErrKeyPackageIdentity, nil, "credential identity is the author's pubkey as hex text; kind 30443 needs the 32 raw bytes")
	}
	return Pubkey{}, fail(ErrKeyPackageIdentity, nil, "credential identity (%d bytes) is not the event author's pubkey", len(cred.Identity))
}

// classifyVerify turns an mls.VerifyKeyPackage error into a check.
func classifyVerify(err error, lt mls.Lifetime) error {
	switch {
	case errors.Is(err, mls.ErrLifetime):
		return fail(ErrKeyPackageLifetime, err, "lifetime not_before %s is after not_after %s", unixText(lt.NotBefore), unixText(lt.NotAfter))
	case errors.Is(err, cipher.ErrInvalidSignature) && errors.Is(err, mls.ErrInvalidLeafNode):
		return fail(ErrKeyPackageSignature, err, "leaf node signature does not verify")
	case errors.Is(err, cipher.ErrInvalidSignature):
		return fail(ErrKeyPackageSignature, err, "KeyPackage signature does not verify")
	}
	return fail(ErrKeyPackageInvalid, err, "KeyPackage fails RFC 9420 checks: %v", err)
}

// unixText shows a lifetime bound as a date when it is one.
func unixText(s uint64) string {
	const year10000 = 253402300800
	if s >= year10000 {
		return fmt.Sprintf("%d (Unix seconds)", s)
	}
	return time.Unix(int64(s), 0).UTC().Format(time.RFC3339)
}

func isLastResort(kp *mls.KeyPackage) bool {
	if kp.Extensions.Has(mls.ExtLastResort) {
		return true
	}
	// Informational only: a dictionary that does not decode is not a
	// parsing failure here.
	d, found, err := kp.Extensions.AppDataDictionary()
	if !found || err != nil {
		return false
	}
	_, ok := d.Find(ComponentLastResort)
	return ok
}

// ValidateKeyPackageEvent is what a client checks before inviting with a
// KeyPackage event (foundation/key-packages.md and transports/nostr.md):
// everything ParseKeyPackageEvent checks, and kind 30443 with exactly one
// each of d (64 lowercase hex), mls_protocol_version ("1.0"), i,
// mls_ciphersuite, mls_extensions, mls_proposals and app_components (id
// lists: one tag, at least one value, 0x and four lowercase hex digits, no
// repeats; app_components with 0x8009), no encoding tag, MLSMessage
// framing, a lifetime current at now and at most 84 days + 1 hour long,
// a leaf supporting app_data_dictionary, AppDataUpdate and component
// 0x8009, and a valid account identity proof.
func ValidateKeyPackageEvent(ev *nostr.Event, now time.Time) (*KeyPackageEvent, error) {
	kp, err := ParseKeyPackageEvent(ev)
	if err != nil {
		return nil, err
	}
	if kp.Kind != KindKeyPackage {
		return nil, fail(ErrKeyPackageProfile, nil, "kind %d is a legacy KeyPackage kind; the current profile publishes 30443", kp.Kind)
	}
	if len(kp.Slot) != 64 || !isLowerHex(kp.Slot) {
		return nil, fail(ErrKeyPackageSlot, nil, "d tag %s is not 64 lowercase hex characters", quote(kp.Slot))
	}
	if hasTag(ev.Tags, "encoding") {
		return nil, fail(ErrKeyPackageProfile, nil, "encoding tag present; the current profile forbids it")
	}
	lists := map[string][]string{}
	for _, name := range []string{"d", "mls_protocol_version", "i", "mls_ciphersuite", "mls_extensions", "mls_proposals", "app_components"} {
		var found []nostr.Tag
		for _, t := range ev.Tags {
			if len(t) > 0 && t[0] == name {
				found = append(found, t)
			}
		}
		if len(found) != 1 {
			return nil, fail(ErrKeyPackageProfile, nil, "%d %s tags, want exactly one", len(found), name)
		}
		t := found[0]
		switch name {
		case "d", "mls_protocol_version", "i":
			if len(t) != 2 {
				return nil, fail(ErrKeyPackageProfile, nil, "%s tag has %d values, want one", name, len(t)-1)
			}
		default:
			vals, err := idList(name, t[1:])
			if err != nil {
				return nil, err
			}
			lists[name] = vals
		}
	}
	if v := tagValues(ev.Tags, "mls_protocol_version")[0]; v != "1.0" {
		return nil, fail(ErrKeyPackageProfile, nil, "mls_protocol_version is %s, want 1.0", quote(v))
	}
	if !slices.Contains(lists["app_components"], "0x8009") {
		return nil, fail(ErrKeyPackageProfile, nil, "app_components tag lacks 0x8009 (account identity proof v2)")
	}
	if !slices.Contains(lists["mls_ciphersuite"], "0x"+hex4(uint16(kp.CipherSuite))) {
		return nil, fail(ErrKeyPackageProfile, nil, "mls_ciphersuite tag does not list the KeyPackage's 0x%04x", uint16(kp.CipherSuite))
	}
	if !kp.Framed {
		return nil, fail(ErrKeyPackageProfile, nil, "content is a bare KeyPackage; the current profile frames it in an MLSMessage")
	}
	if err := checkCurrentLifetime(kp.NotBefore, kp.NotAfter, now); err != nil {
		return nil, err
	}
	if err := checkProfileLeaf(&kp.KeyPackage.LeafNode); err != nil {
		return nil, err
	}
	if _, err := VerifyLeafIdentity(&kp.KeyPackage.LeafNode, kp.CipherSuite); err != nil {
		return nil, fail(ErrKeyPackageProfile, err, "%v", err)
	}
	return kp, nil
}

// idList checks the values of an id-list tag.
func idList(name string, vals []string) ([]string, error) {
	if len(vals) == 0 {
		return nil, fail(ErrKeyPackageProfile, nil, "%s tag has no values", name)
	}
	for i, v := range vals {
		if len(v) != 6 || !strings.HasPrefix(v, "0x") || !isLowerHex(v[2:]) {
			return nil, fail(ErrKeyPackageProfile, nil, "%s value %s is not 0x and four lowercase hex digits", name, quote(v))
		}
		if slices.Contains(vals[:i], v) {
			return nil, fail(ErrKeyPackageProfile, nil, "%s lists %s twice", name, v)
		}
	}
	return vals, nil
}

func checkCurrentLifetime(notBefore, notAfter uint64, now time.Time) error {
	t := uint64(max(now.Unix(), 0))
	switch {
	case notAfter-notBefore > uint64(MaxKeyPackageLifetime/time.Second):
		return fail(ErrKeyPackageLifetime, nil, "lifetime lasts %d s, more than %d s", notAfter-notBefore, uint64(MaxKeyPackageLifetime/time.Second))
	case t < notBefore:
		return fail(ErrKeyPackageLifetime, nil, "KeyPackage is not valid until %s", unixText(notBefore))
	case t > notAfter:
		return fail(ErrKeyPackageLifetime, nil, "KeyPackage expired at %s", unixText(notAfter))
	}
	return nil
}

// checkProfileLeaf checks that a leaf supports what a current-profile
// group requires of every member.
func checkProfileLeaf(leaf *mls.LeafNode) error {
	caps := &leaf.Capabilities
	for _, e := range profileExtensions {
		if !slices.Contains(caps.Extensions, e) {
			return fail(ErrKeyPackageProfile, nil, "leaf does not support extension 0x%04x", uint16(e))
		}
	}
	for _, p := range profileProposals {
		if !slices.Contains(caps.Proposals, p) {
			return fail(ErrKeyPackageProfile, nil, "leaf does not support proposal 0x%04x", uint16(p))
		}
	}
	return nil
}

// KeyPackageOptions are the choices of a new KeyPackage. The zero value
// makes a current-profile, last-resort KeyPackage of ciphersuite 0x0001
// valid from an hour ago for 84 days.
type KeyPackageOptions struct {
	// CipherSuite defaults to 0x0001, the suite every Marmot client supports.
	CipherSuite mls.CipherSuite
	// Components are the app components advertised; nil means
	// DefaultComponents. 0x0001 and 0x8009 are always added.
	Components ComponentsList
	// NotLastResort leaves out the last-resort component (0x0004).
	NotLastResort bool
	// Lifetime is how long the KeyPackage is valid from now; zero means 84
	// days. Validity starts one hour before now for clock skew.
	Lifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand supplies the signature, init and encryption keys; nil means the
	// system's randomness.
	Rand io.Reader
}

// KeyPackageBundle is a new KeyPackage with the private keys behind it.
type KeyPackageBundle struct {
	KeyPackage *mls.KeyPackage
	Private    *mls.KeyPackagePrivate
	// SignatureKey is the leaf's MLS signature key, which the account's
	// identity proof authorizes.
	SignatureKey *cipher.SignatureKey
	// Ref is the KeyPackageRef.
	Ref []byte
	// Message is the KeyPackage framed as an MLSMessage, the content of a
	// current-profile event (before base64).
	Message []byte
}

// leafParams is a current-profile leaf for account with signature key sk:
// the capabilities the profile needs and an app_data_dictionary carrying
// the supported components, an empty safe_aad list and the identity proof.
func leafParams(account Signer, cs mls.CipherSuite, sk *cipher.SignatureKey, components ComponentsList, now time.Time) (mls.LeafParams, error) {
	proof, err := NewIdentityProof(account, cs, sk.PublicKey(), uint64(max(now.Unix(), 1)))
	if err != nil {
		return mls.LeafParams{}, err
	}
	if components == nil {
		components = DefaultComponents
	}
	supported := append(slices.Clone(components), ComponentAppComponents, ComponentIdentityProof)
	dict, err := mls.NewExtension(mls.ExtAppDataDictionary, &mls.AppDataDictionary{Components: []mls.ComponentData{
		{ComponentID: ComponentAppComponents, Data: supported.Marshal()},
		{ComponentID: ComponentSafeAAD, Data: ComponentsList{}.Marshal()},
		{ComponentID: ComponentIdentityProof, Data: proof.Marshal()},
	}})
	if err != nil {
		return mls.LeafParams{}, err
	}
	pub := account.PublicKey()
	return mls.LeafParams{
		Credential: mls.Credential{Type: mls.CredentialBasic, Identity: pub[:]},
		Capabilities: mls.Capabilities{
			Versions:     []mls.ProtocolVersion{mls.MLS10},
			CipherSuites: []mls.CipherSuite{cs},
			Extensions:   slices.Clone(profileExtensions),
			Proposals:    slices.Clone(profileProposals),
			Credentials:  []mls.CredentialType{mls.CredentialBasic},
		},
		Extensions: mls.Extensions{dict},
	}, nil
}

// NewKeyPackage makes a current-profile KeyPackage for account: a fresh
// leaf signature key authorized by an identity proof, BasicCredential =
// the account key, and (unless opts say otherwise) the last-resort
// component.
func NewKeyPackage(account Signer, opts KeyPackageOptions) (*KeyPackageBundle, error) {
	cs := opts.CipherSuite
	if cs == 0 {
		cs = mls.X25519AES128GCMSHA256Ed25519
	}
	suite, err := cipher.New(cs)
	if err != nil {
		return nil, fmt.Errorf("marmot: %w", err)
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = MaxKeyPackageLifetime - time.Hour
	}
	random := opts.Rand
	if random == nil {
		random = rand.Reader
	}
	sk, err := suite.GenerateSignatureKeyFrom(random)
	if err != nil {
		return nil, fmt.Errorf("marmot: signature key: %w", err)
	}
	leaf, err := leafParams(account, cs, sk, opts.Components, now)
	if err != nil {
		return nil, err
	}
	var kpExt mls.Extensions
	if !opts.NotLastResort {
		e, err := mls.NewExtension(mls.ExtAppDataDictionary, &mls.AppDataDictionary{Components: []mls.ComponentData{{ComponentID: ComponentLastResort}}})
		if err != nil {
			return nil, err
		}
		kpExt = mls.Extensions{e}
	}
	kp, priv, err := mls.NewKeyPackage(suite, sk, mls.KeyPackageParams{
		Credential:     leaf.Credential,
		Capabilities:   leaf.Capabilities,
		Lifetime:       mls.Lifetime{NotBefore: uint64(max(now.Add(-time.Hour).Unix(), 0)), NotAfter: uint64(max(now.Add(lifetime).Unix(), 0))},
		LeafExtensions: leaf.Extensions,
		Extensions:     kpExt,
		Rand:           random,
	})
	if err != nil {
		return nil, fmt.Errorf("marmot: KeyPackage: %w", err)
	}
	bare, err := kp.Bytes()
	if err != nil {
		return nil, err
	}
	ref, err := suite.KeyPackageRef(bare)
	if err != nil {
		return nil, err
	}
	msg, err := mls.Marshal(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp})
	if err != nil {
		return nil, err
	}
	return &KeyPackageBundle{KeyPackage: kp, Private: priv, SignatureKey: sk, Ref: ref, Message: msg}, nil
}

// NewSlot makes a KeyPackage publication slot id: 32 random bytes in
// lowercase hex, made once per installation and reused for replacements.
func NewSlot() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Event returns the signed kind 30443 event publishing the bundle in slot,
// with the current profile's tags, derived from the KeyPackage itself.
func (b *KeyPackageBundle) Event(account Signer, slot string, createdAt time.Time) (*nostr.Event, error) {
	if len(slot) != 64 || !isLowerHex(slot) {
		return nil, fail(ErrKeyPackageSlot, nil, "slot %s is not 64 lowercase hex characters", quote(slot))
	}
	leaf := &b.KeyPackage.LeafNode
	var components ComponentsList
	if dict, found, err := leaf.Extensions.AppDataDictionary(); err == nil && found {
		if list, ok := dict.Find(ComponentAppComponents); ok {
			components, _ = ParseComponentsList(list)
		}
	}
	ids := func(name string, vs ...uint16) nostr.Tag {
		t := nostr.Tag{name}
		for _, v := range vs {
			t = append(t, "0x"+hex4(v))
		}
		return t
	}
	var exts, props, comps []uint16
	for _, e := range leaf.Capabilities.Extensions {
		exts = append(exts, uint16(e))
	}
	for _, p := range leaf.Capabilities.Proposals {
		props = append(props, uint16(p))
	}
	for _, c := range components {
		comps = append(comps, uint16(c))
	}
	ev := &nostr.Event{
		CreatedAt: nostr.Timestamp(createdAt.Unix()),
		Kind:      KindKeyPackage,
		Tags: nostr.Tags{
			{"d", slot},
			{"mls_protocol_version", "1.0"},
			{"i", hex.EncodeToString(b.Ref)},
			ids("mls_ciphersuite", uint16(b.KeyPackage.CipherSuite)),
			ids("mls_extensions", exts...),
			ids("mls_proposals", props...),
			ids("app_components", comps...),
		},
		Content: base64.StdEncoding.EncodeToString(b.Message),
	}
	if err := account.SignEvent(ev); err != nil {
		return nil, fmt.Errorf("marmot: sign the KeyPackage event: %w", err)
	}
	return ev, nil
}

// LegacyEvent returns the bundle's KeyPackage as a signed kind 443 event,
// the legacy form clients in the 443 → 30443 transition publish beside the
// 30443 with identical content (base64 of the framed KeyPackage, with an
// encoding tag saying so, and the KeyPackageRef in i). A relay matches the
// two as twins by that KeyPackageRef; when the KeyPackage is used, both must
// go.
func (b *KeyPackageBundle) LegacyEvent(account Signer, createdAt time.Time) (*nostr.Event, error) {
	ev := &nostr.Event{
		CreatedAt: nostr.Timestamp(createdAt.Unix()),
		Kind:      KindLegacyKeyPackage,
		Tags: nostr.Tags{
			{"mls_protocol_version", "1.0"},
			{"mls_ciphersuite", "0x" + hex4(uint16(b.KeyPackage.CipherSuite))},
			{"encoding", "base64"},
			{"i", hex.EncodeToString(b.Ref)},
		},
		Content: base64.StdEncoding.EncodeToString(b.Message),
	}
	if err := account.SignEvent(ev); err != nil {
		return nil, fmt.Errorf("marmot: sign the legacy KeyPackage event: %w", err)
	}
	return ev, nil
}
