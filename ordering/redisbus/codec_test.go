package redisbus

import (
	"bytes"
	"errors"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	pk := newPK()
	for _, seq := range []int64{0, 1, 127, 128, 1 << 40, 1<<63 - 1} {
		ev := event(pk, "ab", int(seq%1000))
		id := [idLen]byte{1, 2, 3, 4, 5, 6, 7, 8}
		f, err := encode(id, Message{Event: ev, Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		gotID, m, err := decode(f)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if gotID != id || m.Seq != seq || m.Event.ID != ev.ID || m.Event.Sig != ev.Sig || m.Event.Tags[0][1] != "ab" {
			t.Fatalf("seq %d: round trip gave id %x seq %d event %s", seq, gotID, m.Seq, m.Event.ID)
		}
	}
	if _, err := encode([idLen]byte{}, Message{Event: event(pk, "ab", 1), Seq: -1}); !errors.Is(err, errFrame) {
		t.Fatalf("negative seq: err = %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	pk := newPK()
	ev := event(pk, "ab", 1)
	good, err := encode([idLen]byte{}, Message{Event: ev, Seq: 5})
	if err != nil {
		t.Fatal(err)
	}
	tampered := *ev
	tampered.Content = "changed" // id no longer matches
	badID, _ := encode([idLen]byte{}, Message{Event: &tampered})
	upper := *ev
	upper.PubKey = string(bytes.ToUpper([]byte(ev.PubKey)))
	badHex, _ := encode([idLen]byte{}, Message{Event: &upper})
	bigSeq := append([]byte{frameVersion}, make([]byte, idLen)...)
	bigSeq = append(bigSeq, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01) // 2^64-1
	bigSeq = append(bigSeq, good[1+idLen+1:]...)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short", good[:5]},
		{"version", append([]byte{0}, good[1:]...)},
		{"no event", good[:1+idLen+1]},
		{"not json", append(append([]byte(nil), good[:1+idLen+1]...), "nope"...)},
		{"seq above int64", bigSeq},
		{"id mismatch", badID},
		{"uppercase pubkey", badHex},
		{"json wrapper", []byte(`{"i":"x","s":1,"e":{}}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decode(tc.in); !errors.Is(err, errFrame) {
				t.Fatalf("decode err = %v, want errFrame", err)
			}
		})
	}
}

// FuzzDecode: decode never panics, and whatever it accepts encodes back to
// a frame that decodes to the same message.
func FuzzDecode(f *testing.F) {
	pk := newPK()
	for i, seq := range []int64{0, 1, 300} {
		good, err := encode([idLen]byte{byte(i)}, Message{Event: event(pk, "ab", i), Seq: seq})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good)
		f.Add(good[:len(good)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{frameVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		id, m, err := decode(in)
		if err != nil {
			return
		}
		again, err := encode(id, m)
		if err != nil {
			t.Fatalf("accepted frame does not encode: %v", err)
		}
		id2, m2, err := decode(again)
		if err != nil || id2 != id || m2.Seq != m.Seq || m2.Event.ID != m.Event.ID {
			t.Fatalf("re-encoded frame decodes differently: %v", err)
		}
	})
}
