package cipher

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// Secret is key material. Its String, GoString, Format and LogValue methods
// print a placeholder instead of the bytes, so fmt verbs (%v %+v %#v %s %x
// %q ...) and slog never reveal it. Convert explicitly with []byte(s) where
// the bytes are really needed (encoding, persistence).
type Secret []byte

// redacted is the placeholder printed instead of a secret's bytes; only the
// length is shown because it is public (fixed by the ciphersuite).
func redacted(kind string, n int) string {
	return kind + "(redacted, " + strconv.Itoa(n) + " bytes)"
}

// String implements fmt.Stringer with a redacted placeholder.
func (s Secret) String() string { return redacted("cipher.Secret", len(s)) }

// GoString implements fmt.GoStringer with a redacted placeholder.
func (s Secret) GoString() string { return s.String() }

// Format implements fmt.Formatter so that every verb, including %x and %d,
// prints the placeholder.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer; without it slog's text handler would
// print a byte slice's contents.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Zero overwrites the secret's bytes with zeros in place. Go cannot promise
// that no other copy exists (the runtime may have moved it), but zeroing the
// live copy is what the deletion schedule of RFC 9420 section 9.2 asks of us.
func (s Secret) Zero() { clear(s) }

// Equal reports in constant time whether s and other hold the same bytes.
func (s Secret) Equal(other []byte) bool {
	return subtle.ConstantTimeCompare(s, other) == 1
}

// Clone returns an independent copy, so that zeroing one does not affect the
// other.
func (s Secret) Clone() Secret {
	if s == nil {
		return nil
	}
	return append(Secret(make([]byte, 0, len(s))), s...)
}
