package cipher

import (
	"bytes"
	"testing"

	"github.com/burrow-relay/burrow/mls/codec"
)

// TestVarintMatchesCodec checks the local varint writer, used on the hot
// path to build labels without a codec.Writer, against mls/codec at every
// size boundary.
func TestVarintMatchesCodec(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 16383, 16384, 1<<30 - 1} {
		got := appendVarint(nil, n)
		want := codec.AppendVarint(nil, uint64(n))
		if !bytes.Equal(got, want) || varintLen(n) != len(want) {
			t.Errorf("varint(%d) = %x (len %d), want %x", n, got, varintLen(n), want)
		}
	}
}

// TestLabelledEncodingLongInputs checks KDFLabel-style encodings whose label
// or context need two- and four-byte length headers.
func TestLabelledEncodingLongInputs(t *testing.T) {
	for _, n := range []int{10, 60, 100, 20000} {
		ctx := bytes.Repeat([]byte{9}, n)
		label := string(bytes.Repeat([]byte{'a'}, n))
		got, err := appendLabelled(nil, true, label, ctx)
		if err != nil {
			t.Fatal(err)
		}
		w := codec.NewWriter(0)
		w.Opaque([]byte(labelPrefix + label))
		w.Opaque(ctx)
		if !bytes.Equal(got, w.Bytes()) || labelledSize(true, label, ctx) != len(got) {
			t.Errorf("n=%d: encoding differs from mls/codec", n)
		}
	}
}
