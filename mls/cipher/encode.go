package cipher

import (
	"errors"
	"fmt"
)

// ErrTooLong is returned when a value cannot be encoded as an MLS
// variable-length vector (RFC 9420 section 2.1.2 caps lengths at 2^30-1).
var ErrTooLong = errors.New("mls/cipher: value too long for an MLS vector")

const maxVarint = 1<<30 - 1

// varintLen is the size of the MLS varint length header for n.
func varintLen(n int) int {
	switch {
	case n < 1<<6:
		return 1
	case n < 1<<14:
		return 2
	default:
		return 4
	}
}

// appendVarint appends n as an MLS (QUIC-style, at most four bytes) varint.
// n must already be checked against maxVarint.
func appendVarint(dst []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(dst, byte(n))
	case n < 1<<14:
		return append(dst, 0x40|byte(n>>8), byte(n))
	default:
		return append(dst, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// labelPrefix is prepended to every label in the labelled functions.
const labelPrefix = "MLS 1.0 "

// appendLabelled appends the common shape of KDFLabel's tail, SignContent,
// EncryptContext and RefHashInput: opaque label<V> ("MLS 1.0 "+label when
// prefixed) followed by opaque value<V>.
func appendLabelled(dst []byte, prefixed bool, label string, value []byte) ([]byte, error) {
	ll := len(label)
	if prefixed {
		ll += len(labelPrefix)
	}
	if ll > maxVarint || len(value) > maxVarint {
		return nil, fmt.Errorf("%w: label %d bytes, value %d bytes", ErrTooLong, ll, len(value))
	}
	dst = appendVarint(dst, ll)
	if prefixed {
		dst = append(dst, labelPrefix...)
	}
	dst = append(dst, label...)
	dst = appendVarint(dst, len(value))
	return append(dst, value...), nil
}

// labelledSize is the encoded size appendLabelled produces.
func labelledSize(prefixed bool, label string, value []byte) int {
	ll := len(label)
	if prefixed {
		ll += len(labelPrefix)
	}
	return varintLen(ll) + ll + varintLen(len(value)) + len(value)
}
