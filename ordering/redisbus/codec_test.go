package redisbus

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/burrow-relay/burrow/storage"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestCodecRoundTrip(t *testing.T) {
	pk := newPK()
	from := [idLen]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for i, seq := range []int64{0, 1, 127, 128, 1 << 40, 1<<63 - 1} {
		ev := event(pk, "ab", int(seq%1000))
		num := uint64(i*1000 + 1)
		raw, err := encodeEvent(testKey, from, num, Message{Event: ev, Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		f, err := decode(testKey, raw)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if !f.authed || f.beat || f.from != from || f.num != num || f.msg.Seq != seq || f.msg.Event.ID != ev.ID ||
			f.msg.Event.Sig != ev.Sig || f.msg.Event.Tags[0][1] != "ab" {
			t.Fatalf("seq %d: round trip gave %+v", seq, f)
		}
	}
	if _, err := encodeEvent(testKey, from, 1, Message{Event: event(pk, "ab", 1), Seq: -1}); !errors.Is(err, errFrame) {
		t.Fatalf("negative seq: err = %v", err)
	}
	// A replacement Commit carries what it released.
	rel := &storage.Release{ID: strings.Repeat("c3", 32), Seq: 41}
	ev := event(pk, "ab", 2)
	raw, err := encodeEvent(testKey, from, 7, Message{Event: ev, Seq: 42, Releases: rel})
	if err != nil {
		t.Fatal(err)
	}
	f, err := decode(testKey, raw)
	if err != nil || f.msg.Seq != 42 || f.msg.Releases == nil || *f.msg.Releases != *rel || f.msg.Event.ID != ev.ID {
		t.Fatalf("release round trip = %+v, %v", f, err)
	}
	for _, bad := range []*storage.Release{{ID: "short", Seq: 1}, {ID: rel.ID, Seq: 0}} {
		if _, err := encodeEvent(testKey, from, 1, Message{Event: ev, Seq: 1, Releases: bad}); !errors.Is(err, errFrame) {
			t.Fatalf("release %+v: err = %v, want errFrame", bad, err)
		}
	}
	// A heartbeat carries its number only.
	f, err = decode(testKey, encodeBeat(testKey, from, 99))
	if err != nil || !f.beat || !f.authed || f.num != 99 || f.from != from || f.msg.Event != nil {
		t.Fatalf("heartbeat decoded to %+v, %v", f, err)
	}
}

// TestDecodeAuthenticates: a frame is authenticated only by a MAC under
// the deployment's key over all of it. Another key, any changed byte, a
// MAC cut short or a frame of an earlier version (which carries none) is
// never taken as authenticated.
// TestDeletionNoticeRoundTrip: a deletion notice carries its ids, is
// authenticated like any frame, and refuses malformed lists.
func TestDeletionNoticeRoundTrip(t *testing.T) {
	ids := []string{strings.Repeat("ab", 32), strings.Repeat("01", 32)}
	frame, err := encodeDeletions(testKey, [idLen]byte{5}, 7, ids)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := decode(testKey, frame)
	if err != nil || !fr.authed || fr.num != 7 || fr.msg.Event != nil || !slices.Equal(fr.msg.Deleted, ids) {
		t.Fatalf("decoded %+v, %v", fr, err)
	}
	if _, err := decode([]byte("another deployment's key 0123456"), frame); !errors.Is(err, errMAC) {
		t.Fatalf("under another key: %v, want errMAC", err)
	}
	for _, bad := range [][]string{nil, {"short"}, {strings.Repeat("AB", 32)}, make([]string, MaxDeletedPerMessage+1)} {
		if _, err := encodeDeletions(testKey, [idLen]byte{5}, 8, bad); !errors.Is(err, errFrame) {
			t.Fatalf("encodeDeletions(%d ids) = %v, want errFrame", len(bad), err)
		}
	}
}

func TestDecodeAuthenticates(t *testing.T) {
	ev := event(newPK(), "ab", 1)
	raw, err := encodeEvent(testKey, [idLen]byte{1}, 5, Message{Event: ev, Seq: 3})
	if err != nil {
		t.Fatal(err)
	}
	otherKey := bytes.Repeat([]byte{7}, 32)
	if _, err := decode(otherKey, raw); !errors.Is(err, errMAC) {
		t.Fatalf("another deployment's key: err = %v, want errMAC", err)
	}
	for i := range raw {
		flipped := bytes.Clone(raw)
		flipped[i] ^= 0x01
		if f, err := decode(testKey, flipped); err == nil && f.authed {
			t.Fatalf("byte %d flipped: still authenticated", i)
		}
	}
	if f, err := decode(testKey, raw[:len(raw)-1]); err == nil && f.authed {
		t.Fatal("a frame with a shortened MAC is authenticated")
	}
	// An all-zero signature in a frame made by hand, as in the issue's
	// reproduction, with any MAC but the right one.
	forged := *ev
	forged.Sig = strings.Repeat("0", 128)
	forgedRaw, _ := encodeEvent(otherKey, [idLen]byte{2}, 1, Message{Event: &forged})
	if _, err := decode(testKey, forgedRaw); !errors.Is(err, errMAC) {
		t.Fatalf("forged frame: err = %v, want errMAC", err)
	}
}

// TestDecodeReadsEarlierVersions: frames of versions 1 and 2 still decode
// (for counting and diagnosis), never as authenticated.
func TestDecodeReadsEarlierVersions(t *testing.T) {
	ev := event(newPK(), "ab", 3)
	body, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	v1 := append([]byte{frameVersionV1, 1, 2, 3, 4, 5, 6, 7, 8}, 7)
	v1 = append(v1, body...)
	v2 := append([]byte{frameVersionV2, 1, 2, 3, 4, 5, 6, 7, 8}, 7, 0)
	v2 = append(v2, body...)
	for name, raw := range map[string][]byte{"version 1": v1, "version 2": v2} {
		f, err := decode(testKey, raw)
		if err != nil || f.authed || f.from != [idLen]byte{1, 2, 3, 4, 5, 6, 7, 8} || f.msg.Seq != 7 || f.msg.Releases != nil || f.msg.Event.ID != ev.ID {
			t.Fatalf("%s frame decoded to %+v, %v", name, f, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	pk := newPK()
	ev := event(pk, "ab", 1)
	tampered := *ev
	tampered.Content = "changed" // id no longer matches
	badID, _ := encodeEvent(testKey, [idLen]byte{}, 1, Message{Event: &tampered})
	upper := *ev
	upper.PubKey = string(bytes.ToUpper([]byte(ev.PubKey)))
	badHex, _ := encodeEvent(testKey, [idLen]byte{}, 1, Message{Event: &upper})
	body, _ := ev.MarshalJSON()
	sealed := func(parts ...[]byte) []byte {
		out := bytes.Join(parts, nil)
		return append(out, mac(testKey, out)...)
	}
	hdr := func(typ byte, num ...byte) []byte {
		return append(append([]byte{frameVersion, typ}, make([]byte, idLen)...), num...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short", []byte{frameVersion, 0, 1}},
		{"version", sealed([]byte{0, 0}, make([]byte, idLen), []byte{1, 0, 0}, body)},
		{"type", sealed(hdr(9, 1), []byte{0, 0}, body)},
		{"frame number zero", sealed(hdr(typeEvent, 0), []byte{0, 0}, body)},
		{"heartbeat with a body", sealed(hdr(typeBeat, 1), []byte{0})},
		{"no event", sealed(hdr(typeEvent, 1), []byte{0, 0})},
		{"not json", sealed(hdr(typeEvent, 1), []byte{0, 0}, []byte("nope"))},
		{"release seq without its id", sealed(hdr(typeEvent, 1), []byte{5, 4}, []byte(`{"id":`))},
		{"seq above int64", sealed(hdr(typeEvent, 1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, body)},
		{"id mismatch", badID},
		{"uppercase pubkey", badHex},
		{"json wrapper", []byte(`{"i":"x","s":1,"e":{}}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decode(testKey, tc.in); !errors.Is(err, errFrame) && !errors.Is(err, errMAC) {
				t.Fatalf("decode err = %v, want errFrame or errMAC", err)
			}
		})
	}
}

// FuzzDecode: decode never panics, and whatever it accepts as
// authenticated encodes back to a frame that decodes to the same.
func FuzzDecode(f *testing.F) {
	pk := newPK()
	for i, seq := range []int64{0, 1, 300} {
		good, err := encodeEvent(testKey, [idLen]byte{byte(i)}, uint64(i+1), Message{Event: event(pk, "ab", i), Seq: seq})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good)
		f.Add(good[:len(good)/2])
	}
	f.Add(encodeBeat(testKey, [idLen]byte{1}, 3))
	if notice, err := encodeDeletions(testKey, [idLen]byte{2}, 4, []string{event(pk, "ab", 9).ID}); err == nil {
		f.Add(notice)
	}
	f.Add([]byte{})
	f.Add([]byte{frameVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := decode(testKey, in)
		if err != nil || !fr.authed {
			return
		}
		var again []byte
		switch {
		case fr.beat:
			again = encodeBeat(testKey, fr.from, fr.num)
		case fr.msg.Event == nil:
			if again, err = encodeDeletions(testKey, fr.from, fr.num, fr.msg.Deleted); err != nil {
				t.Fatalf("accepted deletion notice does not encode: %v", err)
			}
		default:
			if again, err = encodeEvent(testKey, fr.from, fr.num, fr.msg); err != nil {
				t.Fatalf("accepted frame does not encode: %v", err)
			}
		}
		fr2, err := decode(testKey, again)
		if err != nil || fr2.from != fr.from || fr2.num != fr.num || fr2.beat != fr.beat || fr2.msg.Seq != fr.msg.Seq ||
			(fr.msg.Event != nil && fr2.msg.Event.ID != fr.msg.Event.ID) || (fr2.msg.Releases == nil) != (fr.msg.Releases == nil) ||
			!slices.Equal(fr2.msg.Deleted, fr.msg.Deleted) {
			t.Fatalf("re-encoded frame decodes differently: %v", err)
		}
	})
}
