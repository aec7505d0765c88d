package keypackages

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
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
	// per device).
	KindKeyPackage = 30443
	// KindLegacyKeyPackage is the KeyPackage kind clients used before 2026-05.
	KindLegacyKeyPackage = 443
)

// IsKeyPackageKind reports whether kind is 443 or 30443.
func IsKeyPackageKind(kind int) bool {
	return kind == KindKeyPackage || kind == KindLegacyKeyPackage
}

const (
	// DefaultGrace is how far outside its lifetime a KeyPackage is still
	// accepted, for clock skew between the client and the relay.
	DefaultGrace = time.Hour
	// DefaultMaxLifetime caps not_after - not_before on current-profile
	// events: Marmot's 84 days plus one hour (7,261,200 s).
	DefaultMaxLifetime = 84*24*time.Hour + time.Hour
)

// Validator checks KeyPackage events on ingest. The zero value is ready to
// use with the defaults. It holds no state and is safe for concurrent use.
type Validator struct {
	// Now is the clock lifetimes are checked against; nil means time.Now.
	Now func() time.Time
	// Grace is how far outside [not_before, not_after] the clock may be;
	// zero means DefaultGrace and a negative value means none.
	Grace time.Duration
	// MaxLifetime bounds not_after - not_before on current-profile events
	// (those with an app_components tag); zero means DefaultMaxLifetime
	// and a negative value means no bound.
	MaxLifetime time.Duration
}

// Info is what validation learned that later KeyPackage rules need.
type Info struct {
	Kind int
	// Ref is the KeyPackageRef of the inner KeyPackage, lowercase hex: the
	// value of a correct i tag, and the key that matches a 443 and a 30443
	// twin carrying the same KeyPackage.
	Ref         string
	CipherSuite cipher.CipherSuite
	// NotBefore and NotAfter are the leaf node's lifetime in Unix seconds
	// (uint64 on the wire: ts-mls's default not_after is 2^63-1).
	NotBefore, NotAfter uint64
	// Slot is the d tag of a kind 30443, empty for kind 443.
	Slot string
	// LastResort is set when the KeyPackage is marked last resort: the
	// last_resort extension (0x000a), or component 0x0004 in an
	// app_data_dictionary extension.
	LastResort bool
	// CurrentProfile is set when the event carries an app_components tag;
	// only such events are held to the lifetime cap.
	CurrentProfile bool
	// Framed is set when the content is an MLSMessage framing the
	// KeyPackage rather than a bare KeyPackage.
	Framed bool
	// KeyPackage is the decoded inner KeyPackage; its Raw field holds the
	// exact bytes the ref was computed over.
	KeyPackage *mls.KeyPackage
}

// lastResortComponent is the empty-data app component that marks a
// KeyPackage last resort in the MLS extensions draft Marmot now follows.
const lastResortComponent mls.ComponentID = 0x0004

func (v Validator) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

func (v Validator) grace() time.Duration {
	switch {
	case v.Grace == 0:
		return DefaultGrace
	case v.Grace < 0:
		return 0
	}
	return v.Grace
}

func (v Validator) maxLifetime() time.Duration {
	switch {
	case v.MaxLifetime == 0:
		return DefaultMaxLifetime
	case v.MaxLifetime < 0:
		return 0
	}
	return v.MaxLifetime
}

// Rule is Validate in khatru's admission hook shape: it refuses a kind 443
// or 30443 event that fails validation with "invalid: <reason>" and lets
// every other kind through.
func (v Validator) Rule() func(ctx context.Context, ev *nostr.Event) (reject bool, msg string) {
	return func(_ context.Context, ev *nostr.Event) (bool, string) {
		if !IsKeyPackageKind(ev.Kind) {
			return false, ""
		}
		if _, err := v.Validate(ev); err != nil {
			return true, Message(err)
		}
		return false, ""
	}
}

// Validate checks a kind 443 or 30443 event and returns what later rules
// need. Every failure is an *Error matching one of the Err* sentinels. The
// tags relays, client, mls_protocol_version, mls_extensions, mls_proposals
// and app_components are neither required nor compared with the KeyPackage;
// app_components is read only to choose the lifetime rule.
func (v Validator) Validate(ev *nostr.Event) (Info, error) {
	if !IsKeyPackageKind(ev.Kind) {
		return Info{}, fail(ErrKind, nil, "kind %d is not a KeyPackage kind (443 or 30443)", ev.Kind)
	}
	info := Info{Kind: ev.Kind}
	if ev.Kind == KindKeyPackage {
		slot, err := slotTag(ev.Tags)
		if err != nil {
			return Info{}, err
		}
		info.Slot = slot
	}
	tagSuite, tagName, err := suiteTag(ev.Kind, ev.Tags)
	if err != nil {
		return Info{}, err
	}
	refTag, err := iTag(ev.Kind, ev.Tags)
	if err != nil {
		return Info{}, err
	}
	info.CurrentProfile = hasTag(ev.Tags, "app_components")

	raw, err := decodeContent(ev.Kind, ev.Content, ev.Tags)
	if err != nil {
		return Info{}, err
	}
	kp, framed, err := parseKeyPackage(raw)
	if err != nil {
		return Info{}, err
	}
	info.Framed = framed
	if kp.Version != mls.MLS10 {
		return Info{}, fail(ErrVersion, nil, "KeyPackage protocol version is %d, want mls10 (1)", kp.Version)
	}
	if uint16(kp.CipherSuite) != tagSuite {
		return Info{}, fail(ErrCipherSuiteMismatch, nil,
			"KeyPackage ciphersuite is 0x%04x but the %s tag says 0x%04x", uint16(kp.CipherSuite), tagName, tagSuite)
	}
	suite, err := cipher.New(kp.CipherSuite)
	if err != nil {
		return Info{}, fail(ErrCipherSuite, err, "ciphersuite 0x%04x is not supported", uint16(kp.CipherSuite))
	}
	info.CipherSuite = suite.ID()
	if err := checkIdentity(ev, &kp.LeafNode.Credential); err != nil {
		return Info{}, err
	}
	// No time and no bound here: the grace and the cap are relay rules,
	// applied by checkLifetime below.
	if err := mls.VerifyKeyPackage(suite, kp, mls.LeafNodeRules{}); err != nil {
		return Info{}, classifyVerify(err, kp.LeafNode.Lifetime)
	}
	lt := kp.LeafNode.Lifetime
	info.NotBefore, info.NotAfter = lt.NotBefore, lt.NotAfter
	if err := v.checkLifetime(lt, info.CurrentProfile); err != nil {
		return Info{}, err
	}
	ref, err := suite.KeyPackageRef(kp.Raw)
	if err != nil {
		return Info{}, fail(ErrRef, err, "cannot compute the KeyPackageRef")
	}
	info.Ref = hex.EncodeToString(ref)
	switch {
	case refTag == nil && ev.Kind == KindKeyPackage:
		return Info{}, fail(ErrRef, nil, "missing i tag: kind 30443 must carry the KeyPackageRef %s", info.Ref)
	case refTag != nil && *refTag != info.Ref:
		return Info{}, fail(ErrRef, nil, "i tag %s is not the KeyPackageRef %s of the KeyPackage (lowercase hex)", quote(*refTag), info.Ref)
	}
	info.LastResort = isLastResort(kp)
	info.KeyPackage = kp
	return info, nil
}

// tagValues returns the values (second elements) of every tag named name;
// a tag with no value contributes "".
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
		return "", fail(ErrSlot, nil, "missing d tag: kind 30443 needs exactly one d of 64 lowercase hex characters")
	case 1:
	default:
		return "", fail(ErrSlot, nil, "%d d tags: kind 30443 needs exactly one", len(ds))
	}
	d := ds[0]
	if len(d) != 64 {
		return "", fail(ErrSlot, nil, "d tag is %d characters, want 64 lowercase hex", len(d))
	}
	if !isLowerHex(d) {
		return "", fail(ErrSlot, nil, "d tag %s is not lowercase hex", quote(d))
	}
	return d, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
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
		return 0, "", fail(ErrCipherSuite, nil, "missing mls_ciphersuite tag")
	case 1:
	default:
		return 0, "", fail(ErrCipherSuite, nil, "%d %s tags, want one", len(vals), name)
	}
	s := vals[0]
	var n uint64
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		n, err = strconv.ParseUint(h, 16, 16)
	} else {
		n, err = strconv.ParseUint(s, 10, 16)
	}
	if err != nil || s == "" {
		return 0, "", fail(ErrCipherSuite, nil, "%s tag %s is not a ciphersuite number such as 0x0001", name, quote(s))
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
	return nil, fail(ErrRef, nil, "%d i tags on kind %d, want one", len(vals), kind)
}

// decodeContent turns the content into bytes: base64 on 30443; on 443,
// hex when the encoding tag is absent or "hex", base64 when it is "base64".
func decodeContent(kind int, content string, tags nostr.Tags) ([]byte, error) {
	encs := tagValues(tags, "encoding")
	if len(encs) > 1 {
		return nil, fail(ErrEncoding, nil, "%d encoding tags, want at most one", len(encs))
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
		return nil, fail(ErrEncoding, nil, "kind 30443 content must be base64, but the encoding tag says %s", quote(enc))
	case enc == "" || enc == "hex":
		useHex = true
	default:
		return nil, fail(ErrEncoding, nil, "unknown encoding %s, want base64 or hex", quote(enc))
	}
	if content == "" {
		return nil, fail(ErrEncoding, nil, "empty content")
	}
	if useHex {
		b, err := hex.DecodeString(content)
		if err != nil {
			return nil, fail(ErrEncoding, err, "content is not hex (kind 443 without an encoding tag means hex): %v", err)
		}
		return b, nil
	}
	// The decoder skips line breaks even in strict mode; the canonical
	// form has none.
	if strings.ContainsAny(content, "\r\n") {
		return nil, fail(ErrEncoding, nil, "content has line breaks; standard padded base64 has none")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(content)
	if err != nil {
		return nil, fail(ErrEncoding, err, "content is not standard padded base64: %v", err)
	}
	return b, nil
}

// parseKeyPackage decodes b as exactly one KeyPackage, bare or framed.
// Bytes 2-3 tell them apart: the ciphersuite in a bare KeyPackage, the
// wire format (5, mls_key_package) in an MLSMessage.
func parseKeyPackage(b []byte) (kp *mls.KeyPackage, framed bool, err error) {
	if len(b) < 4 {
		return nil, false, fail(ErrFraming, nil, "content is %d bytes, too short for a KeyPackage", len(b))
	}
	if mls.WireFormat(binary.BigEndian.Uint16(b[2:4])) == mls.WireFormatKeyPackage {
		m := new(mls.MLSMessage)
		trailing, merr := decode(b, m)
		switch {
		case merr == nil && trailing > 0:
			return nil, false, trailingBytes(trailing)
		case merr == nil && m.Version != mls.MLS10:
			return nil, false, fail(ErrVersion, nil, "MLSMessage protocol version is %d, want mls10 (1)", m.Version)
		case merr == nil:
			return m.KeyPackage, true, nil
		}
		// A bare KeyPackage of ciphersuite 5 also has 00 05 there; the
		// ciphersuite checks refuse it with a clearer reason.
		kp := new(mls.KeyPackage)
		if trailing, err := decode(b, kp); err == nil && trailing == 0 {
			return kp, false, nil
		}
		return nil, false, fail(ErrFraming, merr, "content is an MLSMessage of wire format mls_key_package that does not decode: %v", merr)
	}
	kp = new(mls.KeyPackage)
	trailing, err := decode(b, kp)
	switch {
	case err == nil && trailing > 0:
		return nil, false, trailingBytes(trailing)
	case err == nil:
		return kp, false, nil
	}
	if m, merr := mls.DecodeMLSMessage(b); merr == nil {
		return nil, false, fail(ErrFraming, nil, "content is an MLSMessage of wire format %d, want mls_key_package (5)", m.WireFormat)
	}
	return nil, false, fail(ErrFraming, err, "content is not a KeyPackage: %v", err)
}

// decode reads one v from the start of b and says how many bytes are left
// after it; mls.Unmarshal would refuse them without saying how many.
func decode(b []byte, v mls.Decoder) (trailing int, err error) {
	r := codec.NewReader(b)
	v.DecodeFrom(r)
	if err := r.Err(); err != nil {
		return 0, err
	}
	return len(b) - r.Offset(), nil
}

func trailingBytes(n int) error {
	return fail(ErrFraming, codec.ErrTrailingBytes, "trailing bytes after the KeyPackage (%d)", n)
}

func checkIdentity(ev *nostr.Event, cred *mls.Credential) error {
	if cred.Type != mls.CredentialBasic {
		return fail(ErrIdentity, nil, "credential type is 0x%04x, want basic (0x0001)", uint16(cred.Type))
	}
	author, err := hex.DecodeString(ev.PubKey)
	if err != nil || len(author) != 32 {
		return fail(ErrIdentity, err, "event pubkey is not 64 hex characters")
	}
	if bytes.Equal(cred.Identity, author) {
		return nil
	}
	// Legacy 443s may carry the identity as the pubkey's hex text.
	if ev.Kind == KindLegacyKeyPackage && len(cred.Identity) == 64 && strings.EqualFold(string(cred.Identity), ev.PubKey) {
		return nil
	}
	if ev.Kind == KindKeyPackage && len(cred.Identity) == 64 && strings.EqualFold(string(cred.Identity), ev.PubKey) {
		return fail(ErrIdentity, nil, "credential identity is the author's pubkey as hex text; kind 30443 needs the 32 raw bytes")
	}
	return fail(ErrIdentity, nil, "credential identity (%d bytes) is not the event author's pubkey", len(cred.Identity))
}

// classifyVerify turns an mls.VerifyKeyPackage error into a check.
func classifyVerify(err error, lt mls.Lifetime) error {
	switch {
	case errors.Is(err, mls.ErrLifetime):
		return fail(ErrLifetime, err, "lifetime not_before %s is after not_after %s", unixText(lt.NotBefore), unixText(lt.NotAfter))
	case errors.Is(err, cipher.ErrInvalidSignature) && errors.Is(err, mls.ErrInvalidLeafNode):
		return fail(ErrSignature, err, "leaf node signature does not verify")
	case errors.Is(err, cipher.ErrInvalidSignature):
		return fail(ErrSignature, err, "KeyPackage signature does not verify")
	}
	return fail(ErrKeyPackage, err, "KeyPackage fails RFC 9420 checks: %v", err)
}

func (v Validator) checkLifetime(lt mls.Lifetime, current bool) error {
	now := v.now().Unix()
	grace := int64(v.grace() / time.Second)
	if lt.NotBefore > lt.NotAfter {
		return fail(ErrLifetime, nil, "lifetime not_before %s is after not_after %s", unixText(lt.NotBefore), unixText(lt.NotAfter))
	}
	if late := now + grace; late < 0 || uint64(late) < lt.NotBefore {
		return fail(ErrLifetime, nil, "KeyPackage is not valid until %s, more than %v from now", unixText(lt.NotBefore), v.grace())
	}
	if early := now - grace; early > 0 && uint64(early) > lt.NotAfter {
		return fail(ErrLifetime, nil, "KeyPackage expired at %s, more than %v ago", unixText(lt.NotAfter), v.grace())
	}
	if limit := v.maxLifetime(); current && limit > 0 {
		span := lt.NotAfter - lt.NotBefore
		if maxSpan := uint64(limit / time.Second); span > maxSpan {
			return fail(ErrLifetime, nil, "lifetime lasts %d s, more than the %d s (%s) allowed on events with app_components", span, maxSpan, days(limit))
		}
	}
	return nil
}

// days shows a long duration with its days, e.g. "84 days 1h0m0s".
func days(d time.Duration) string {
	const day = 24 * time.Hour
	n, rest := d/day, d%day
	switch {
	case n == 0:
		return rest.String()
	case rest == 0:
		return fmt.Sprintf("%d days", n)
	}
	return fmt.Sprintf("%d days %v", n, rest)
}

// unixText shows a lifetime bound as a date when it is one.
func unixText(s uint64) string {
	const year10000 = 253402300800
	if s >= year10000 {
		return fmt.Sprintf("%d (Unix seconds)", s)
	}
	return time.Unix(int64(s), 0).UTC().Format(time.RFC3339)
}

// quote shows a client-supplied value in a reason, cut short.
func quote(s string) string {
	const limit = 80
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}

func isLastResort(kp *mls.KeyPackage) bool {
	if kp.Extensions.Has(mls.ExtLastResort) {
		return true
	}
	// Informational only: a dictionary that does not decode is not a
	// validation failure (the relay does not check extension contents).
	d, found, err := kp.Extensions.AppDataDictionary()
	if !found || err != nil {
		return false
	}
	_, ok := d.Find(lastResortComponent)
	return ok
}
