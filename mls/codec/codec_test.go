package codec_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/internal/vectortest"
)

func TestDeserializationVectors(t *testing.T) {
	var cases []struct {
		Header vectortest.Hex  `json:"vlbytes_header"`
		Length vectortest.Uint `json:"length"`
	}
	vectortest.Load(t, "deserialization.json", &cases)
	count := vectortest.NewCounter("deserialization.json")
	for i, tc := range cases {
		count.Add("all")
		r := codec.NewReader(tc.Header)
		got := r.Varint()
		if err := r.Finish(); err != nil {
			t.Errorf("case %d: %x: %v", i, []byte(tc.Header), err)
			continue
		}
		if got != uint64(tc.Length) {
			t.Errorf("case %d: %x decoded to %d, want %d", i, []byte(tc.Header), got, tc.Length)
		}
		var w codec.Writer
		w.Varint(uint64(tc.Length))
		if !bytes.Equal(w.Bytes(), tc.Header) {
			t.Errorf("case %d: %d encoded to %x, want %x", i, tc.Length, w.Bytes(), []byte(tc.Header))
		}
	}
	count.Check(t, len(cases))
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReaderErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		read func(r *codec.Reader)
		want error
	}{
		{"varint empty", "", func(r *codec.Reader) { r.Varint() }, codec.ErrTruncated},
		{"varint 2-byte non-minimal", "4001", func(r *codec.Reader) { r.Varint() }, codec.ErrNonMinimalVarint},
		{"varint 2-byte zero", "4000", func(r *codec.Reader) { r.Varint() }, codec.ErrNonMinimalVarint},
		{"varint 4-byte non-minimal", "80003fff", func(r *codec.Reader) { r.Varint() }, codec.ErrNonMinimalVarint},
		{"varint reserved prefix", "c0000000000000ff", func(r *codec.Reader) { r.Varint() }, codec.ErrInvalidVarint},
		{"varint short 2", "40", func(r *codec.Reader) { r.Varint() }, codec.ErrTruncated},
		{"varint short 4", "800040", func(r *codec.Reader) { r.Varint() }, codec.ErrTruncated},
		{"opaque short", "050102", func(r *codec.Reader) { r.Opaque() }, codec.ErrTruncated},
		{"16 MiB prefix on 10 bytes", "81000000010203040506", func(r *codec.Reader) { r.Opaque() }, codec.ErrTruncated},
		{"trailing", "0100ff", func(r *codec.Reader) { r.Opaque() }, codec.ErrTrailingBytes},
		{"u16 short", "01", func(r *codec.Reader) { r.U16() }, codec.ErrTruncated},
		{"u32 short", "010203", func(r *codec.Reader) { r.U32() }, codec.ErrTruncated},
		{"u64 short", "01020304050607", func(r *codec.Reader) { r.U64() }, codec.ErrTruncated},
		{"optional 2", "02", func(r *codec.Reader) { r.Present() }, codec.ErrInvalidOptional},
		{"u16 vector odd", "03000100", func(r *codec.Reader) { r.U16Vector() }, codec.ErrVectorLength},
		{"u32 vector odd", "020001", func(r *codec.Reader) { r.U32Vector() }, codec.ErrVectorLength},
		{"element overruns vector", "0102aa", func(r *codec.Reader) {
			s := r.OpenVector()
			for r.More() {
				r.Opaque()
			}
			r.CloseVector(s)
		}, codec.ErrTruncated},
		{"nesting", "0403020100", func(r *codec.Reader) {
			r.SetMaxDepth(3)
			var open func()
			open = func() {
				s := r.OpenVector()
				for r.More() {
					open()
				}
				r.CloseVector(s)
			}
			open()
		}, codec.ErrTooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := codec.NewReader(mustHex(t, tc.in))
			tc.read(r)
			err := r.Finish()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestHugeLengthDoesNotAllocate(t *testing.T) {
	in := mustHex(t, "81000000010203040506") // 16 MiB opaque on 10 bytes
	var r codec.Reader
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(in)
		s := r.OpenVector()
		for r.More() {
			r.U8()
		}
		r.CloseVector(s)
		r.Reset(in)
		if r.Opaque() != nil {
			t.Fatal("opaque read past the input")
		}
	})
	// Only the two error values may allocate; the 16 MiB length must never
	// turn into a buffer.
	if allocs > 2 {
		t.Fatalf("%v allocations per run", allocs)
	}
	r.Reset(in)
	r.Opaque()
	if !errors.Is(r.Err(), codec.ErrTruncated) {
		t.Fatalf("got %v", r.Err())
	}
}

func TestRoundTrip(t *testing.T) {
	var w codec.Writer
	w.U8(7)
	w.U16(0x1234)
	w.U32(0xdeadbeef)
	w.U64(0x0102030405060708)
	w.Opaque(bytes.Repeat([]byte{0xaa}, 70))
	w.Present(true)
	w.U16Vector([]uint16{1, 2, 3})
	w.U32Vector(nil)
	m := w.OpenVector()
	for i := 0; i < 100; i++ {
		w.Opaque([]byte("abc"))
	}
	w.CloseVector(m)
	m = w.OpenVector()
	w.CloseVector(m)
	w.Fixed([]byte{9, 9})
	if w.Err() != nil {
		t.Fatal(w.Err())
	}

	r := codec.NewReader(w.Bytes())
	if r.U8() != 7 || r.U16() != 0x1234 || r.U32() != 0xdeadbeef || r.U64() != 0x0102030405060708 {
		t.Fatal("integers differ")
	}
	if o := r.Opaque(); len(o) != 70 || o[69] != 0xaa {
		t.Fatalf("opaque %x", o)
	}
	if !r.Present() {
		t.Fatal("presence lost")
	}
	if v := r.U16Vector(); len(v) != 3 || v[2] != 3 {
		t.Fatalf("u16 vector %v", v)
	}
	if v := r.U32Vector(); len(v) != 0 {
		t.Fatalf("u32 vector %v", v)
	}
	s := r.OpenVector()
	if r.Remaining() != 400 {
		t.Fatalf("vector body %d bytes, want 400", r.Remaining())
	}
	n := 0
	for r.More() {
		if string(r.Opaque()) != "abc" {
			t.Fatal("element differs")
		}
		n++
	}
	r.CloseVector(s)
	if n != 100 {
		t.Fatalf("%d elements", n)
	}
	s = r.OpenVector()
	if r.More() {
		t.Fatal("empty vector has elements")
	}
	r.CloseVector(s)
	if !bytes.Equal(r.Fixed(2), []byte{9, 9}) {
		t.Fatal("fixed differs")
	}
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestWriterTooLong(t *testing.T) {
	var w codec.Writer
	w.Varint(codec.MaxVarint + 1)
	if !errors.Is(w.Err(), codec.ErrTooLong) || w.Bytes() != nil {
		t.Fatalf("got %v", w.Err())
	}
}

func TestVarintBoundaries(t *testing.T) {
	for _, v := range []uint64{0, 63, 64, 16383, 16384, codec.MaxVarint} {
		b := codec.AppendVarint(nil, v)
		if len(b) != codec.VarintLen(v) {
			t.Errorf("%d: %d bytes, VarintLen %d", v, len(b), codec.VarintLen(v))
		}
		r := codec.NewReader(b)
		if got := r.Varint(); got != v || r.Finish() != nil {
			t.Errorf("%d: decoded %d, %v", v, got, r.Finish())
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{0x81, 0, 0, 0, 1})
	f.Add([]byte{0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := codec.NewReader(in)
		var walk func(depth int)
		walk = func(depth int) {
			s := r.OpenVector()
			for r.More() {
				if r.Remaining()%2 == 0 && depth < 40 {
					walk(depth + 1)
				} else {
					r.Opaque()
				}
			}
			r.CloseVector(s)
		}
		walk(0)
		if r.Err() == nil && r.Offset() > len(in) {
			t.Fatal("read past the input")
		}
	})
}
