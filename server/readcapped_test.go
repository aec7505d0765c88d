package server

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestReadCapped: a message is kept whole up to limit+1 bytes and cut there
// beyond it, read in one piece or a byte at a time, into a buffer that is
// reused; a read error is returned.
func TestReadCapped(t *testing.T) {
	const limit = 1000
	for _, size := range []int{0, 1, 511, 512, 999, 1000, 1001, 1002, 5000, 70000} {
		msg := bytes.Repeat([]byte("x"), size)
		for i := range msg {
			msg[i] = byte('a' + i%26)
		}
		want := msg[:min(size, limit+1)]
		for name, rd := range map[string]io.Reader{
			"whole":          bytes.NewReader(msg),
			"byte at a time": iotest.OneByteReader(bytes.NewReader(msg)),
			"data with EOF":  iotest.DataErrReader(bytes.NewReader(msg)),
		} {
			buf := make([]byte, 0, 16)
			got, err := readCapped(rd, buf, limit)
			if err != nil {
				t.Fatalf("size %d %s: %v", size, name, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d %s: got %d bytes, want %d", size, name, len(got), len(want))
			}
		}
	}
	boom := errors.New("boom")
	got, err := readCapped(io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom)), nil, limit)
	if !errors.Is(err, boom) || string(got) != "abc" {
		t.Fatalf("got %q, %v; want \"abc\", boom", got, err)
	}
}

// TestReadCappedAllocations: reading a message into a buffer with room
// allocates nothing (io.Copy allocated a 32 KiB buffer per message).
func TestReadCappedAllocations(t *testing.T) {
	msg := bytes.Repeat([]byte("x"), 1500)
	buf := make([]byte, 0, 4096)
	rd := bytes.NewReader(msg)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(msg)
		buf, _ = readCapped(rd, buf[:0], 1<<20)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per message, want 0", allocs)
	}
}
