package marmot

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors of the KeyPackage event parser. Each failure of
// ParseKeyPackageEvent and ValidateKeyPackageEvent is an *Error whose Check
// is exactly one of these, so callers (the relay among them) match with
// errors.Is and show Reason.
var (
	// ErrKeyPackageKind means the event is neither kind 443 nor kind 30443.
	ErrKeyPackageKind = errors.New("marmot: not a KeyPackage kind")
	// ErrKeyPackageEncoding means the content is not in the encoding the
	// event's kind and encoding tag call for.
	ErrKeyPackageEncoding = errors.New("marmot: bad KeyPackage content encoding")
	// ErrKeyPackageFraming means the decoded bytes are not exactly one
	// KeyPackage, bare or framed in an MLSMessage of wire format
	// mls_key_package.
	ErrKeyPackageFraming = errors.New("marmot: bad KeyPackage framing")
	// ErrKeyPackageVersion means the MLSMessage or the KeyPackage is not
	// mls10.
	ErrKeyPackageVersion = errors.New("marmot: unsupported MLS protocol version")
	// ErrKeyPackageCipherSuite means the mls_ciphersuite tag is missing or
	// malformed, or the KeyPackage's ciphersuite is not implemented.
	ErrKeyPackageCipherSuite = errors.New("marmot: bad KeyPackage ciphersuite")
	// ErrKeyPackageCipherSuiteMismatch means the KeyPackage's ciphersuite
	// differs from the mls_ciphersuite tag.
	ErrKeyPackageCipherSuiteMismatch = errors.New("marmot: KeyPackage ciphersuite differs from the mls_ciphersuite tag")
	// ErrKeyPackageSignature means the KeyPackage or leaf node signature
	// does not verify.
	ErrKeyPackageSignature = errors.New("marmot: bad KeyPackage signature")
	// ErrKeyPackageInvalid means another group-independent RFC 9420 check
	// failed (keys, leaf node source, capabilities, repeated extensions).
	ErrKeyPackageInvalid = errors.New("marmot: invalid KeyPackage")
	// ErrKeyPackageIdentity means the credential is not a BasicCredential
	// holding the event author's pubkey.
	ErrKeyPackageIdentity = errors.New("marmot: KeyPackage credential is not the author")
	// ErrKeyPackageRef means the i tag is missing (kind 30443), repeated,
	// or not the KeyPackageRef of the inner KeyPackage.
	ErrKeyPackageRef = errors.New("marmot: bad KeyPackageRef")
	// ErrKeyPackageLifetime means the lifetime is inverted, or (for the
	// current profile's checks) not current or longer than 84 days + 1 h.
	ErrKeyPackageLifetime = errors.New("marmot: KeyPackage lifetime not valid")
	// ErrKeyPackageSlot means a kind 30443 lacks exactly one usable d tag.
	ErrKeyPackageSlot = errors.New("marmot: bad KeyPackage d slot")
	// ErrKeyPackageProfile means the event or KeyPackage breaks a rule of
	// the current profile: tag cardinality and values, framing, the
	// capabilities and components it must advertise, or its identity proof.
	ErrKeyPackageProfile = errors.New("marmot: KeyPackage outside the current profile")
)

// Errors of the other decoders and of group processing.
var (
	// ErrComponent means app component data does not decode exactly or
	// breaks the component's validation rules.
	ErrComponent = errors.New("marmot: invalid app component")
	// ErrRelayURL means a relay URL breaks the Nostr relay URL profile.
	ErrRelayURL = errors.New("marmot: invalid relay URL")
	// ErrIdentityProof means a leaf's account identity proof (component
	// 0x8009) is missing, malformed or does not verify.
	ErrIdentityProof = errors.New("marmot: invalid account identity proof")
	// ErrGroupEvent means a kind 445 event breaks the envelope rules (kind,
	// tags, content encoding, length).
	ErrGroupEvent = errors.New("marmot: malformed group event")
	// ErrUndecryptable means no retained epoch key opens a kind 445
	// event's content (transport_deferred in the spec's terms).
	ErrUndecryptable = errors.New("marmot: no retained key opens the group event")
	// ErrAppEvent means an inner app payload is not a valid unsigned Nostr
	// event shape.
	ErrAppEvent = errors.New("marmot: malformed app payload")
	// ErrAppEventAuthor means an app payload's pubkey is not the account
	// of the MLS sender that sent it.
	ErrAppEventAuthor = errors.New("marmot: app payload author is not the MLS sender")
	// ErrWelcome means a gift wrap, seal or kind 444 rumor breaks the
	// Welcome rules.
	ErrWelcome = errors.New("marmot: invalid Welcome")
	// ErrWrongRecipient means a gift wrap is addressed to another account.
	ErrWrongRecipient = errors.New("marmot: Welcome addressed to another account")
	// ErrUnknownKeyPackage means a Welcome names a KeyPackage this client
	// does not hold.
	ErrUnknownKeyPackage = errors.New("marmot: Welcome for a KeyPackage this client does not hold")
	// ErrNotAdmin means an action or commit needs an admin of the group's
	// admin policy and its author is not one.
	ErrNotAdmin = errors.New("marmot: not an admin of the group")
	// ErrForbidden means a commit or proposal breaks a group rule other
	// than the admin check (a combined self-update and SelfRemove, an
	// admin leaving as the last admin, a component removed or invalid).
	ErrForbidden = errors.New("marmot: not allowed by the group's rules")
	// ErrGroupState means a group's state lacks what the current profile
	// requires (components, required capabilities).
	ErrGroupState = errors.New("marmot: group state outside the current profile")
	// ErrDuplicate means a message was already processed (same message
	// id).
	ErrDuplicate = errors.New("marmot: duplicate message")
	// ErrStale means a message cannot affect the group any more: a commit
	// or application message older than the retained window, or a commit
	// that lost to the canonical branch.
	ErrStale = errors.New("marmot: stale message")
	// ErrPendingCommit means the group holds an unpublished commit of its
	// own; it must be confirmed or discarded first.
	ErrPendingCommit = errors.New("marmot: a commit is pending publication")
)

// Error is one refusal: Check is the sentinel it matches, Reason the
// specific, human-readable cause (safe to show: it never carries key
// material or message content), Err the underlying cause when there is one.
type Error struct {
	Check  error
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Check.Error() + ": " + e.Reason }

// Unwrap lets errors.Is match both the check and the underlying cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Check}
	}
	return []error{e.Check, e.Err}
}

func fail(check, cause error, format string, args ...any) *Error {
	return &Error{Check: check, Reason: fmt.Sprintf(format, args...), Err: cause}
}

// quote shows a client-supplied value in a reason, cut short.
func quote(s string) string {
	const limit = 80
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}
