package keyschedule_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/burrow-relay/burrow/mls/cipher"
	"github.com/burrow-relay/burrow/mls/codec"
	"github.com/burrow-relay/burrow/mls/keyschedule"
)

func epochState(t testing.TB, e *keyschedule.Epoch) []byte {
	t.Helper()
	var w codec.Writer
	e.EncodeState(&w)
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	return w.Bytes()
}

func newEpoch(t testing.TB) (*cipher.Suite, *keyschedule.Epoch) {
	t.Helper()
	s, err := cipher.New(1)
	if err != nil {
		t.Fatal(err)
	}
	e, err := keyschedule.Derive(s, bytes.Repeat([]byte{1}, 32), nil, nil, []byte("context"))
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

// TestEpochStateRoundTrip checks that a restored epoch holds the same
// secrets (and the same absent ones) as the original.
func TestEpochStateRoundTrip(t *testing.T) {
	s, e := newEpoch(t)
	e.DropWelcomeSecrets()
	enc := epochState(t, e)
	r, err := keyschedule.RestoreState(s, codec.NewReader(bytes.Clone(enc)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(epochState(t, r), enc) {
		t.Fatal("restored epoch encodes differently")
	}
	a, errA := e.Exporter("x", nil, 32)
	b, errB := r.Exporter("x", nil, 32)
	if errA != nil || errB != nil || !bytes.Equal(a, b) || r.JoinerSecret() != nil {
		t.Fatalf("restored epoch differs (%v, %v)", errA, errB)
	}
	short := append(bytes.Clone(enc[:3]), 1, 2)
	if _, err := keyschedule.RestoreState(s, codec.NewReader(short)); !errors.Is(err, keyschedule.ErrState) {
		t.Fatalf("short secret: %v, want ErrState", err)
	}
}

// FuzzEpochRestoreState feeds arbitrary bytes to RestoreState: no panic,
// and an accepted input encodes back to itself.
func FuzzEpochRestoreState(f *testing.F) {
	s, e := newEpoch(f)
	f.Add(epochState(f, e))
	e.DropWelcomeSecrets()
	f.Add(epochState(f, e))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := codec.NewReader(in)
		ep, err := keyschedule.RestoreState(s, r)
		if err != nil || r.Finish() != nil {
			return
		}
		if out := epochState(t, ep); !bytes.Equal(out, in) {
			t.Fatalf("restored epoch encodes differently\n in %x\nout %x", in, out)
		}
	})
}
