// Package codec owns the TLS presentation-language encoding used by MLS
// (RFC 9420 section 2.1): fixed-width big-endian integers, fixed-size opaque
// arrays, optional<T>, and vectors whose byte length is an MLS variable-length
// integer (section 2.1.2).
//
// The Reader never allocates on behalf of the input: a length prefix is checked
// against the bytes actually remaining before anything is read, decoded opaque
// values alias the input, and vectors are read in place on the same Reader (no
// sub-reader is allocated). Errors are sticky: after the first failure every
// read returns a zero value, so decoders can read a whole structure and check
// Err once.
package codec

import (
	"errors"
	"fmt"
)

// Errors reported by Reader and Writer. They are wrapped with the offset at
// which decoding failed; match them with errors.Is.
var (
	// ErrTruncated means the input ended (or a vector's declared length ended)
	// before the value being read.
	ErrTruncated = errors.New("codec: truncated input")
	// ErrNonMinimalVarint means a variable-length integer used more bytes
	// than its value needs, which RFC 9420 section 2.1.2 forbids.
	ErrNonMinimalVarint = errors.New("codec: non-minimal variable-length integer")
	// ErrInvalidVarint means a variable-length integer started with the
	// reserved two-bit prefix 0b11.
	ErrInvalidVarint = errors.New("codec: invalid variable-length integer prefix")
	// ErrTrailingBytes means bytes were left over after a complete value.
	ErrTrailingBytes = errors.New("codec: trailing bytes")
	// ErrTooDeep means vectors were nested deeper than the reader allows.
	ErrTooDeep = errors.New("codec: nesting too deep")
	// ErrInvalidOptional means an optional<T> presence byte was neither 0 nor 1.
	ErrInvalidOptional = errors.New("codec: invalid optional presence byte")
	// ErrTooLong means a value given to the Writer cannot be length-prefixed
	// with an MLS variable-length integer (it is 2^30 bytes or more).
	ErrTooLong = errors.New("codec: vector too long for a variable-length integer")
	// ErrVectorLength means a vector's byte length is not a whole number of
	// its fixed-size elements.
	ErrVectorLength = errors.New("codec: vector length is not a multiple of its element size")
)

// MaxVarint is the largest value an MLS variable-length integer can carry.
const MaxVarint = 1<<30 - 1

// DefaultMaxDepth bounds vector nesting. MLS structures nest about eight
// vectors deep at most; the margin leaves room for extensions.
const DefaultMaxDepth = 32

// Reader decodes TLS-encoded values from a byte slice. The zero value is not
// usable; call NewReader.
type Reader struct {
	buf      []byte
	off      int
	limit    int // end of the innermost open vector, or len(buf)
	depth    int
	maxDepth int
	err      error
}

// NewReader returns a Reader over b. Decoded byte slices alias b, so b must
// not be modified while they are in use.
func NewReader(b []byte) *Reader {
	return &Reader{buf: b, limit: len(b), maxDepth: DefaultMaxDepth}
}

// Reset points r at b, clearing any error, so one Reader can be reused.
func (r *Reader) Reset(b []byte) {
	*r = Reader{buf: b, limit: len(b), maxDepth: r.maxDepth}
	if r.maxDepth == 0 {
		r.maxDepth = DefaultMaxDepth
	}
}

// SetMaxDepth changes the vector nesting bound (n < 1 means DefaultMaxDepth).
func (r *Reader) SetMaxDepth(n int) {
	if n < 1 {
		n = DefaultMaxDepth
	}
	r.maxDepth = n
}

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Error is a decoding failure at a known input offset. It unwraps to one of
// the sentinel errors above or to the error passed to Fail.
type Error struct {
	Err    error
	Offset int
	// Length and Left describe a length prefix that exceeded the bytes left
	// (both zero otherwise).
	Length uint64
	Left   int
}

func (e *Error) Error() string {
	if e.Length != 0 {
		return fmt.Sprintf("%v: length %d with %d bytes left (at offset %d)", e.Err, e.Length, e.Left, e.Offset)
	}
	return fmt.Sprintf("%v (at offset %d)", e.Err, e.Offset)
}

func (e *Error) Unwrap() error { return e.Err }

// Fail records err (as an *Error carrying the current offset) unless an
// error is already recorded. Decoders of higher-level structures use it for
// semantic errors such as an unknown enum value in a select.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = &Error{Err: err, Offset: r.off}
	}
}

// failLength records a length prefix n that exceeds the bytes left.
func (r *Reader) failLength(n uint64) {
	if r.err == nil {
		r.err = &Error{Err: ErrTruncated, Offset: r.off, Length: n, Left: r.limit - r.off}
	}
}

// Offset is the number of bytes consumed from the start of the input.
func (r *Reader) Offset() int { return r.off }

// Remaining is the number of bytes left before the end of the innermost open
// vector (or of the input).
func (r *Reader) Remaining() int { return r.limit - r.off }

// More reports whether the innermost open vector (or the input) has bytes
// left and no error has been met. It drives element loops.
func (r *Reader) More() bool { return r.err == nil && r.off < r.limit }

// Since returns the input bytes consumed since offset start (a value from
// Offset). It aliases the input.
func (r *Reader) Since(start int) []byte {
	if start < 0 || start > r.off {
		return nil
	}
	return r.buf[start:r.off:r.off]
}

// Finish reports the first error, or ErrTrailingBytes if input is left over.
func (r *Reader) Finish() error {
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.buf) {
		return fmt.Errorf("%w: %d bytes after offset %d", ErrTrailingBytes, len(r.buf)-r.off, r.off)
	}
	return nil
}

// take returns the next n bytes, or nil after recording ErrTruncated.
func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.limit-r.off {
		r.Fail(ErrTruncated)
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// U8 reads a uint8.
func (r *Reader) U8() uint8 {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// U16 reads a big-endian uint16.
func (r *Reader) U16() uint16 {
	b := r.take(2)
	if b == nil {
		return 0
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

// U32 reads a big-endian uint32.
func (r *Reader) U32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// U64 reads a big-endian uint64.
func (r *Reader) U64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// Varint reads an MLS variable-length integer (RFC 9420 section 2.1.2),
// rejecting the reserved prefix and non-minimal encodings.
func (r *Reader) Varint() uint64 {
	if r.err != nil {
		return 0
	}
	if r.off >= r.limit {
		r.Fail(ErrTruncated)
		return 0
	}
	first := r.buf[r.off]
	var v uint64
	switch first >> 6 {
	case 0:
		r.off++
		return uint64(first)
	case 1:
		b := r.take(2)
		if b == nil {
			return 0
		}
		v = uint64(b[0]&0x3f)<<8 | uint64(b[1])
		if v < 1<<6 {
			r.off -= 2
			r.Fail(ErrNonMinimalVarint)
			return 0
		}
	case 2:
		b := r.take(4)
		if b == nil {
			return 0
		}
		v = uint64(b[0]&0x3f)<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		if v < 1<<14 {
			r.off -= 4
			r.Fail(ErrNonMinimalVarint)
			return 0
		}
	default:
		r.Fail(ErrInvalidVarint)
		return 0
	}
	return v
}

// Fixed reads n bytes (a fixed-size opaque array). The result aliases the input.
func (r *Reader) Fixed(n int) []byte { return r.take(n) }

// Opaque reads opaque data<V>: a varint length then that many bytes. The
// length is checked against what remains before anything else happens. The
// result aliases the input; an empty value decodes as a non-nil empty slice
// only when the input is non-nil.
func (r *Reader) Opaque() []byte {
	n := r.Varint()
	if r.err != nil {
		return nil
	}
	if n > uint64(r.limit-r.off) {
		r.failLength(n)
		return nil
	}
	return r.take(int(n))
}

// OpenVector reads a vector's varint length, checks it against the bytes
// remaining, and confines further reads to the vector. Read elements while
// More() is true, then call CloseVector with the returned value.
func (r *Reader) OpenVector() (saved int) {
	n := r.Varint()
	if r.err != nil {
		return r.limit
	}
	if n > uint64(r.limit-r.off) {
		r.failLength(n)
		return r.limit
	}
	if r.depth >= r.maxDepth {
		r.Fail(ErrTooDeep)
		return r.limit
	}
	saved = r.limit
	r.limit = r.off + int(n)
	r.depth++
	return saved
}

// CloseVector ends the vector opened by OpenVector. An element that did not
// end exactly at the vector's end is reported as ErrTruncated.
func (r *Reader) CloseVector(saved int) {
	if r.err != nil {
		return // decoding has failed; the bounds no longer matter
	}
	if r.off != r.limit {
		r.Fail(ErrTruncated)
		return
	}
	r.depth--
	r.limit = saved
}

// Present reads an optional<T> presence byte: false for 0, true for 1, and
// ErrInvalidOptional otherwise.
func (r *Reader) Present() bool {
	switch r.U8() {
	case 0:
		return false
	case 1:
		return true
	default:
		if r.err == nil {
			r.off--
			r.Fail(ErrInvalidOptional)
		}
		return false
	}
}

// U16Vector reads uint16 elements<V>, allocating once for the exact count.
func (r *Reader) U16Vector() []uint16 {
	saved := r.OpenVector()
	n := r.Remaining()
	var out []uint16
	if r.err == nil {
		if n%2 != 0 {
			r.Fail(ErrVectorLength)
		} else if n > 0 {
			out = make([]uint16, 0, n/2)
		}
	}
	for r.More() {
		out = append(out, r.U16())
	}
	r.CloseVector(saved)
	return out
}

// U32Vector reads uint32 elements<V>, allocating once for the exact count.
func (r *Reader) U32Vector() []uint32 {
	saved := r.OpenVector()
	n := r.Remaining()
	var out []uint32
	if r.err == nil {
		if n%4 != 0 {
			r.Fail(ErrVectorLength)
		} else if n > 0 {
			out = make([]uint32, 0, n/4)
		}
	}
	for r.More() {
		out = append(out, r.U32())
	}
	r.CloseVector(saved)
	return out
}
