package keypackages

import (
	"errors"
	"fmt"
)

// The checks a KeyPackage event can fail. Validate returns an *Error whose
// Check is one of these, so callers match with errors.Is; the specific
// reason is in the Error's Reason.
var (
	// ErrKind means the event is neither kind 443 nor kind 30443.
	ErrKind = errors.New("keypackages: not a KeyPackage kind")
	// ErrEncoding means the content is not in the encoding the event's
	// kind and encoding tag call for.
	ErrEncoding = errors.New("keypackages: bad content encoding")
	// ErrFraming means the decoded bytes are not exactly one KeyPackage,
	// bare or framed in an MLSMessage of wire format mls_key_package.
	ErrFraming = errors.New("keypackages: bad framing")
	// ErrVersion means the MLSMessage or the KeyPackage is not mls10.
	ErrVersion = errors.New("keypackages: unsupported protocol version")
	// ErrCipherSuite means the mls_ciphersuite tag is missing or malformed,
	// or the KeyPackage's ciphersuite is one the relay cannot verify.
	ErrCipherSuite = errors.New("keypackages: bad ciphersuite")
	// ErrCipherSuiteMismatch means the KeyPackage's ciphersuite differs
	// from the mls_ciphersuite tag.
	ErrCipherSuiteMismatch = errors.New("keypackages: ciphersuite differs from the mls_ciphersuite tag")
	// ErrSignature means the KeyPackage or leaf node signature does not
	// verify.
	ErrSignature = errors.New("keypackages: bad signature")
	// ErrKeyPackage means another group-independent RFC 9420 check failed
	// (keys, leaf node source, capabilities, repeated extensions).
	ErrKeyPackage = errors.New("keypackages: invalid KeyPackage")
	// ErrIdentity means the credential is not a BasicCredential holding the
	// event author's pubkey.
	ErrIdentity = errors.New("keypackages: credential is not the author")
	// ErrRef means the i tag is missing (kind 30443), repeated, or not the
	// KeyPackageRef of the inner KeyPackage.
	ErrRef = errors.New("keypackages: bad KeyPackageRef")
	// ErrLifetime means the lifetime is not current within the grace,
	// is inverted, or exceeds the cap for current-profile events.
	ErrLifetime = errors.New("keypackages: lifetime not valid")
	// ErrSlot means a kind 30443 lacks exactly one d tag of 64 lowercase
	// hex characters.
	ErrSlot = errors.New("keypackages: bad d slot")
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
