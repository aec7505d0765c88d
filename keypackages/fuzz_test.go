package keypackages_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/keypackages"
)

// FuzzValidate feeds arbitrary bytes through Validate, encoded as each
// kind expects (so the MLS parsing is reached) or used raw as the content
// (so the decoding is): it must never panic, every refusal must be an
// *Error with an "invalid: " message, and every acceptance must report a
// KeyPackageRef.
func FuzzValidate(f *testing.F) {
	fixtures := fixtureSources(f)
	for _, s := range fixtures {
		for _, raw := range [][]byte{s.bare, s.framed} {
			for mode := range uint8(3) {
				f.Add(raw, mode)
			}
			f.Add([]byte(b64(raw)), uint8(3))
		}
	}
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("AAEABQ=="), uint8(3))
	s := fixtures[0]
	v := at(clock)
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		// The pubkey and the tags stay those of fixture 0, so valid
		// structure with the wrong identity or ref is refused, not accepted.
		ev := &nostr.Event{PubKey: s.pubkey}
		switch mode % 4 {
		case 0:
			ev.Kind, ev.Tags, ev.Content = 30443, eraMinimal(s), b64(data)
		case 1:
			ev.Kind, ev.Tags, ev.Content = 443, eraNIPEE(s), hex.EncodeToString(data)
		case 2:
			ev.Kind, ev.Tags, ev.Content = 443, eraMix443(s), b64(data)
		default:
			ev.Kind, ev.Tags, ev.Content = 30443, eraAdopted(s), string(data)
		}
		info, err := v.Validate(ev)
		if err == nil {
			if len(info.Ref) != 64 || info.KeyPackage == nil {
				t.Fatalf("accepted with Info %+v", info)
			}
			return
		}
		var e *keypackages.Error
		if !errors.As(err, &e) || e.Reason == "" {
			t.Fatalf("error %v is not a *keypackages.Error with a reason", err)
		}
		if msg := keypackages.Message(err); !strings.HasPrefix(msg, "invalid: ") {
			t.Fatalf("message %q", msg)
		}
	})
}
