package codec

// Writer appends TLS-encoded values to a growing buffer. The zero value is
// ready to use. Like Reader, it keeps the first error (a value too long for a
// varint length) and ignores later writes.
type Writer struct {
	buf []byte
	err error
}

// NewWriter returns a Writer whose buffer starts with room for sizeHint bytes.
func NewWriter(sizeHint int) *Writer {
	return &Writer{buf: make([]byte, 0, sizeHint)}
}

// Bytes returns the encoded bytes (nil if an error occurred).
func (w *Writer) Bytes() []byte {
	if w.err != nil {
		return nil
	}
	return w.buf
}

// Len is the number of bytes written so far.
func (w *Writer) Len() int { return len(w.buf) }

// Err returns the first error met, or nil.
func (w *Writer) Err() error { return w.err }

// Fail records err unless one is already recorded.
func (w *Writer) Fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Reset empties the buffer (keeping its capacity) and clears the error.
func (w *Writer) Reset() {
	w.buf = w.buf[:0]
	w.err = nil
}

// U8 appends a uint8.
func (w *Writer) U8(v uint8) { w.buf = append(w.buf, v) }

// U16 appends a big-endian uint16.
func (w *Writer) U16(v uint16) { w.buf = append(w.buf, byte(v>>8), byte(v)) }

// U32 appends a big-endian uint32.
func (w *Writer) U32(v uint32) {
	w.buf = append(w.buf, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// U64 appends a big-endian uint64.
func (w *Writer) U64(v uint64) {
	w.buf = append(w.buf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Varint appends v as a minimal MLS variable-length integer.
func (w *Writer) Varint(v uint64) {
	if v > MaxVarint {
		w.Fail(ErrTooLong)
		return
	}
	w.buf = AppendVarint(w.buf, v)
}

// AppendVarint appends v (at most MaxVarint) as a minimal MLS variable-length
// integer and returns the extended slice.
func AppendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, 0x40|byte(v>>8), byte(v))
	default:
		return append(b, 0x80|byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

// VarintLen is the encoded size of v as a minimal varint (v <= MaxVarint).
func VarintLen(v uint64) int {
	switch {
	case v < 1<<6:
		return 1
	case v < 1<<14:
		return 2
	default:
		return 4
	}
}

// Fixed appends b with no length prefix.
func (w *Writer) Fixed(b []byte) { w.buf = append(w.buf, b...) }

// Opaque appends opaque data<V>: a varint length then b.
func (w *Writer) Opaque(b []byte) {
	if uint64(len(b)) > MaxVarint {
		w.Fail(ErrTooLong)
		return
	}
	w.buf = AppendVarint(w.buf, uint64(len(b)))
	w.buf = append(w.buf, b...)
}

// OpenVector starts a vector<V>; write its elements, then call CloseVector
// with the returned mark. Four bytes are reserved for the length and the
// body is moved down afterwards if the length needs fewer.
func (w *Writer) OpenVector() (mark int) {
	mark = len(w.buf)
	w.buf = append(w.buf, 0, 0, 0, 0)
	return mark
}

// CloseVector writes the length of the vector started at mark.
func (w *Writer) CloseVector(mark int) {
	if mark < 0 || mark+4 > len(w.buf) {
		w.Fail(ErrTruncated)
		return
	}
	n := len(w.buf) - mark - 4
	if uint64(n) > MaxVarint {
		w.Fail(ErrTooLong)
		return
	}
	size := VarintLen(uint64(n))
	AppendVarint(w.buf[mark:mark], uint64(n))
	if size < 4 {
		copy(w.buf[mark+size:], w.buf[mark+4:])
		w.buf = w.buf[:len(w.buf)-(4-size)]
	}
}

// Present appends an optional<T> presence byte.
func (w *Writer) Present(present bool) {
	if present {
		w.U8(1)
	} else {
		w.U8(0)
	}
}

// U16Vector appends uint16 elements<V>.
func (w *Writer) U16Vector(v []uint16) {
	w.Varint(uint64(len(v)) * 2)
	for _, x := range v {
		w.U16(x)
	}
}

// U32Vector appends uint32 elements<V>.
func (w *Writer) U32Vector(v []uint32) {
	w.Varint(uint64(len(v)) * 4)
	for _, x := range v {
		w.U32(x)
	}
}
