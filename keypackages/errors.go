package keypackages

import (
	"errors"
	"fmt"

	"github.com/burrow-relay/burrow/marmot"
)

// The checks a KeyPackage event can fail. Validate returns an *Error whose
// Check is one of these, so callers match with errors.Is; the specific
// reason is in the Error's Reason. They are marmot's sentinels: the event's
// shape is read by marmot.ParseKeyPackageEvent, and only the lifetime
// window and cap (ErrLifetime) are decided here.
var (
	// ErrKind means the event is neither kind 443 nor kind 30443.
	ErrKind = marmot.ErrKeyPackageKind
	// ErrEncoding means the content is not in the encoding the event's
	// kind and encoding tag call for.
	ErrEncoding = marmot.ErrKeyPackageEncoding
	// ErrFraming means the decoded bytes are not exactly one KeyPackage,
	// bare or framed in an MLSMessage of wire format mls_key_package.
	ErrFraming = marmot.ErrKeyPackageFraming
	// ErrVersion means the MLSMessage or the KeyPackage is not mls10.
	ErrVersion = marmot.ErrKeyPackageVersion
	// ErrCipherSuite means the mls_ciphersuite tag is missing or malformed,
	// or the KeyPackage's ciphersuite is one the relay cannot verify.
	ErrCipherSuite = marmot.ErrKeyPackageCipherSuite
	// ErrCipherSuiteMismatch means the KeyPackage's ciphersuite differs
	// from the mls_ciphersuite tag.
	ErrCipherSuiteMismatch = marmot.ErrKeyPackageCipherSuiteMismatch
	// ErrSignature means the KeyPackage or leaf node signature does not
	// verify.
	ErrSignature = marmot.ErrKeyPackageSignature
	// ErrKeyPackage means another group-independent RFC 9420 check failed
	// (keys, leaf node source, capabilities, repeated extensions).
	ErrKeyPackage = marmot.ErrKeyPackageInvalid
	// ErrIdentity means the credential is not a BasicCredential holding the
	// event author's pubkey.
	ErrIdentity = marmot.ErrKeyPackageIdentity
	// ErrRef means the i tag is missing (kind 30443), repeated, or not the
	// KeyPackageRef of the inner KeyPackage.
	ErrRef = marmot.ErrKeyPackageRef
	// ErrLifetime means the lifetime is not current within the grace,
	// is inverted, or exceeds the cap for current-profile events.
	ErrLifetime = marmot.ErrKeyPackageLifetime
	// ErrSlot means a kind 30443 lacks exactly one non-empty d tag of at
	// most 256 bytes.
	ErrSlot = marmot.ErrKeyPackageSlot
)

// Error is one validation failure. Check is the sentinel it matches; Reason
// is the specific, human-readable cause that goes after "invalid: " in the
// relay's OK message; Err, when set, is the underlying cause (an mls,
// cipher or decoding error), also reachable through errors.Is.
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

// Message is the NIP-01 OK message for a refused KeyPackage event:
// "invalid: " and the specific reason.
func Message(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return "invalid: " + e.Reason
	}
	return "invalid: " + err.Error()
}

func fail(check error, cause error, format string, args ...any) *Error {
	return &Error{Check: check, Reason: fmt.Sprintf(format, args...), Err: cause}
}

// OKMessage is the NIP-01 OK message for this failure ("invalid: " and the
// reason), so the relay's EVENT pipeline can answer it without knowing this
// package.
func (e *Error) OKMessage() string { return "invalid: " + e.Reason }
